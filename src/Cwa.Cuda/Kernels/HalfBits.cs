using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// bf16 and IEEE fp16 bit patterns to and from fp32 in integer arithmetic only, so kernels give the same bits on
/// a GPU and on ILGPU's CPU accelerator, and match the host's conversions (Core's FloatToBf16, System.Half):
/// round to nearest even, NaN stays NaN, fp16 overflow becomes infinity, fp16 subnormals are kept.
/// </summary>
public static class HalfBits
{
    public const int Bf16 = 0;
    public const int F16 = 1;

    public static float ToFloat(ushort h, int format) => format == Bf16 ? Interop.IntAsFloat((uint)h << 16) : F16ToFloat(h);

    public static ushort FromFloat(float f, int format) => format == Bf16 ? FloatToBf16(f) : FloatToF16(f);

    public static ushort FloatToBf16(float f)
    {
        uint u = Interop.FloatAsInt(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 0x40u);
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }

    public static float F16ToFloat(ushort h)
    {
        uint sign = ((uint)h & 0x8000u) << 16;
        uint e = ((uint)h >> 10) & 0x1Fu, m = (uint)h & 0x3FFu;
        if (e == 0)
        {
            // Subnormal (or zero): m * 2^-24, exact in fp32.
            float v = m * 5.9604644775390625e-8f;
            return sign != 0 ? -v : v;
        }
        if (e == 31) return Interop.IntAsFloat(sign | 0x7F800000u | (m << 13));
        return Interop.IntAsFloat(sign | ((e + 112u) << 23) | (m << 13));
    }

    public static ushort FloatToF16(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u, ax = x & 0x7FFFFFFFu;
        if (ax > 0x7F800000u) return (ushort)(sign | 0x7E00u);
        if (ax >= 0x477FF000u) return (ushort)(sign | 0x7C00u);
        if (ax < 0x38800000u)
        {
            // Below the smallest normal half: count units of 2^-24, rounding half to even.
            if (ax < 0x33000000u) return (ushort)sign;
            uint e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
            int shift = 126 - (int)e;
            uint r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
            if (rem > half || (rem == half && (r & 1u) != 0)) r++;
            return (ushort)(sign | r);
        }
        uint h = (ax >> 13) - (112u << 10), low = ax & 0x1FFFu;
        if (low > 0x1000u || (low == 0x1000u && (h & 1u) != 0)) h++;
        return (ushort)(sign | h);
    }

    /// <summary>Index of the first NaN or infinity among bf16/fp16 bit patterns (exponent all ones), or -1. Host side.</summary>
    public static long FirstNonFinite(ReadOnlySpan<ushort> bits, StorageFormat format)
    {
        ushort mask = format == StorageFormat.Bf16 ? (ushort)0x7F80 : (ushort)0x7C00;
        int i = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
        {
            var m = System.Runtime.Intrinsics.Vector256.Create(mask);
            ref ushort first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(bits);
            for (; i + 16 <= bits.Length; i += 16)
                if (System.Runtime.Intrinsics.Vector256.EqualsAny(System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref first, (nuint)i) & m, m)) break;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & mask) == mask) return i;
        return -1;
    }
}
