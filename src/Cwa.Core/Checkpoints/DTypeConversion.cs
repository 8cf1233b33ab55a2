using System.Numerics;
using System.Runtime.InteropServices;

namespace Cwa.Core.Checkpoints;

/// <summary>Converts between stored tensor bytes (little-endian) and float/double working copies.</summary>
public static class DTypeConversion
{
    public static void ToFloat(ReadOnlySpan<byte> src, DType type, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case DType.F64:
                var d = MemoryMarshal.Cast<byte, double>(src);
                for (int i = 0; i < d.Length; i++) dst[i] = (float)d[i];
                break;
            case DType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < h.Length; i++) dst[i] = (float)h[i];
                break;
            case DType.BF16: Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(src), dst); break;
        }
    }

    public static void ToDouble(ReadOnlySpan<byte> src, DType type, Span<double> dst)
    {
        if (type == DType.F64)
        {
            MemoryMarshal.Cast<byte, double>(src).CopyTo(dst);
            return;
        }
        var tmp = new float[dst.Length];
        ToFloat(src, type, tmp);
        for (int i = 0; i < tmp.Length; i++) dst[i] = tmp[i];
    }

    /// <summary>bf16 is the top half of an fp32 pattern, so widening is a 16-bit shift (vectorised).</summary>
    public static void Bf16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        var outBits = MemoryMarshal.Cast<float, uint>(dst);
        int i = 0;
        // Vector<T>: 256 bits on x86, 128 (NEON) on ARM64.
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<ushort>.Count <= src.Length; i += Vector<ushort>.Count)
            {
                var v = Vector.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i);
                Vector.Widen(v, out var lo, out var hi);
                (lo << 16).StoreUnsafe(ref MemoryMarshal.GetReference(outBits), (nuint)i);
                (hi << 16).StoreUnsafe(ref MemoryMarshal.GetReference(outBits), (nuint)(i + Vector<uint>.Count));
            }
        for (; i < src.Length; i++) outBits[i] = (uint)src[i] << 16;
    }

    /// <summary>fp32 -> bf16 with round-to-nearest-even; NaN stays a (quiet) NaN.</summary>
    public static ushort FloatToBf16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40);
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }

    /// <summary>Writes values in the given dtype into dst (dst.Length = values.Length * size).</summary>
    public static void FromFloat(ReadOnlySpan<float> values, DType type, Span<byte> dst)
    {
        switch (type)
        {
            case DType.F32: MemoryMarshal.Cast<float, byte>(values).CopyTo(dst); break;
            case DType.F64:
                var d = MemoryMarshal.Cast<byte, double>(dst);
                for (int i = 0; i < values.Length; i++) d[i] = values[i];
                break;
            case DType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(dst);
                for (int i = 0; i < values.Length; i++) h[i] = (Half)values[i];
                break;
            case DType.BF16:
                var b = MemoryMarshal.Cast<byte, ushort>(dst);
                for (int i = 0; i < values.Length; i++) b[i] = FloatToBf16(values[i]);
                break;
        }
    }

    public static void FromDouble(ReadOnlySpan<double> values, DType type, Span<byte> dst)
    {
        if (type == DType.F64)
        {
            MemoryMarshal.Cast<double, byte>(values).CopyTo(dst);
            return;
        }
        var tmp = new float[values.Length];
        for (int i = 0; i < tmp.Length; i++) tmp[i] = (float)values[i];
        FromFloat(tmp, type, dst);
    }

    /// <summary>Rounds values in place to what the dtype can hold (used for --dtype on an fp32 engine).</summary>
    public static void RoundTo(Span<float> values, DType type)
    {
        if (type is DType.F32 or DType.F64) return;
        for (int i = 0; i < values.Length; i++)
            values[i] = type == DType.BF16 ? BitConverter.UInt32BitsToSingle((uint)FloatToBf16(values[i]) << 16) : (float)(Half)values[i];
    }
}
