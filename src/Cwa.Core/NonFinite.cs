using System.Runtime.InteropServices;
using System.Numerics;

namespace Cwa.Core;

/// <summary>Finds NaN/Inf in weights and gradients at memory speed (8 B values for an 8B model, every run).</summary>
public static class NonFinite
{
    private const int Chunk = 1 << 22;

    /// <summary>Index of the first NaN or infinity, or -1; an exponent field of all ones is exactly what non-finite means.</summary>
    public static long FirstIndex(ReadOnlySpan<float> values)
    {
        var bits = MemoryMarshal.Cast<float, uint>(values);
        int i = 0;
        // Vector<T>: 256 bits on x86, 128 on ARM64.
        if (Vector.IsHardwareAccelerated)
        {
            var mask = new Vector<uint>(0x7F800000u);
            for (; i + Vector<uint>.Count <= bits.Length; i += Vector<uint>.Count)
            {
                var v = Vector.LoadUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i) & mask;
                if (Vector.EqualsAny(v, mask)) break;
            }
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & 0x7F800000u) == 0x7F800000u) return i;
        return -1;
    }

    /// <summary>The same over fixed chunks in parallel; still returns the smallest bad index.</summary>
    public static long FirstIndex(float[] values, int threads = 0) => FirstIndexParallel(values, threads);

    /// <summary>The same for bf16 values (a streamed weight read as mapped): its exponent field is bits 7-14.</summary>
    public static long FirstIndexBf16(ReadOnlySpan<ushort> bits)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var mask = new Vector<ushort>(0x7F80);
            for (; i + Vector<ushort>.Count <= bits.Length; i += Vector<ushort>.Count)
            {
                var v = Vector.LoadUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i) & mask;
                if (Vector.EqualsAny(v, mask)) break;
            }
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & 0x7F80) == 0x7F80) return i;
        return -1;
    }

    /// <summary>The same over fixed chunks in parallel (a streamed 8B block is 0.9 GB of values to check).</summary>
    public static unsafe long FirstIndexParallel(ReadOnlySpan<float> values, int threads)
    {
        if (values.Length <= Chunk) return FirstIndex(values);
        fixed (float* p = values) return InChunks(p, values.Length, threads, &FirstIndex);
    }

    /// <summary><see cref="FirstIndexBf16"/> over fixed chunks in parallel.</summary>
    public static unsafe long FirstIndexBf16Parallel(ReadOnlySpan<ushort> bits, int threads)
    {
        if (bits.Length <= Chunk) return FirstIndexBf16(bits);
        fixed (ushort* p = bits) return InChunks(p, bits.Length, threads, &FirstIndexBf16);
    }

    private static unsafe long InChunks<T>(T* values, int length, int threads, delegate*<ReadOnlySpan<T>, long> firstIndex) where T : unmanaged
    {
        int chunks = (length + Chunk - 1) / Chunk;
        var first = new long[chunks];
        T* v = values;
        var find = firstIndex;
        Engine.Gemm.ParallelFor(chunks, threads > 0 ? threads : Environment.ProcessorCount, c =>
        {
            long j = find(new ReadOnlySpan<T>(v + (long)c * Chunk, Math.Min(Chunk, length - c * Chunk)));
            first[c] = j < 0 ? -1 : c * (long)Chunk + j;
        });
        foreach (long j in first)
            if (j >= 0) return j;
        return -1;
    }
}
