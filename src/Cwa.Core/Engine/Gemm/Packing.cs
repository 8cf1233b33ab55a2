using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Cwa.Core.Checkpoints;

namespace Cwa.Core.Engine;

/// <summary>
/// Copies blocks of op(A) and op(B) into the panel layouts the micro-kernels stream through, zero-padding
/// partial panels so the kernels never branch on edges inside the k loop. The two gathering cases (A as stored,
/// B transposed) read several rows at once and write the panel contiguously; B transposed does it in 8x8 AVX
/// and 4x4 SSE/NEON transposes. For the small per-head products of attention, packing used to cost more than the arithmetic.
/// </summary>
internal static unsafe class Packing
{
    /// <summary>op(A)[i0.., p0..] -> panels of mr rows: dest[(panel*kc + p)*mr + r].</summary>
    public static void PackA(bool transA, float[] a, int aOffset, int lda, int i0, int mc, int p0, int kc, int mr, float[] dest)
    {
        int panels = (mc + mr - 1) / mr;
        if (transA)
        {
            // op(A) = A^T: row p of A holds op(A)[*, p] contiguously, so walk p outside and i inside. Walking i
            // outside would stride a whole row per element (32 KB for the lm_head gradient), a new page each time.
            fixed (float* pa = a, pd = dest)
                for (int p = 0; p < kc; p++)
                {
                    float* src = pa + aOffset + (long)(p0 + p) * lda + i0;
                    for (int pi = 0; pi < panels; pi++)
                    {
                        float* d = pd + (long)pi * kc * mr + p * mr, s = src + pi * mr;
                        int rows = Math.Min(mr, mc - pi * mr), r = 0;
                        for (; r < rows; r++) d[r] = s[r];
                        for (; r < mr; r++) d[r] = 0f;
                    }
                }
            return;
        }
        // op(A) = A: interleave mr rows, reading them side by side (each row stays a sequential stream).
        if (mr > 16) throw new ArgumentOutOfRangeException(nameof(mr));
        float** rowPtr = stackalloc float*[16];
        fixed (float* pa = a, pd = dest)
        {
            for (int pi = 0; pi < panels; pi++)
            {
                int live = Math.Min(mr, mc - pi * mr);
                for (int r = 0; r < live; r++) rowPtr[r] = pa + aOffset + (long)(i0 + pi * mr + r) * lda + p0;
                float* d = pd + (long)pi * kc * mr;
                for (int p = 0; p < kc; p++, d += mr)
                {
                    int r = 0;
                    for (; r < live; r++) d[r] = rowPtr[r][p];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
        }
    }

    /// <summary>op(B)[p0.., j0..] -> panels of nr columns: dest[(panel*kc + p)*nr + j].</summary>
    public static void PackB(bool transB, float[] b, int bOffset, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset)
    {
        int panels = (nc + nr - 1) / nr;
        fixed (float* pb = b, pd = dest)
        {
            int first = 0;
            if (!transB)
            {
                // op(B) = B: each row of the block is read once, start to end, and dealt out to the whole panels.
                // Walking panel by panel instead read 128 bytes from each of kc rows in turn (a stride of a whole
                // row), which the prefetchers did not follow: 5 GB/s against 12 GB/s for the transposed case.
                int whole = nc / nr;
                for (int p = 0; p < kc; p++)
                {
                    float* src = pb + bOffset + (long)(p0 + p) * ldb + j0;
                    float* dst = pd + destOffset + p * nr;
                    for (int pj = 0; pj < whole; pj++, src += nr, dst += (long)kc * nr) CopyRow(src, dst, nr);
                }
                first = whole;
            }
            for (int pj = first; pj < panels; pj++)
            {
                float* d = pd + destOffset + (long)pj * kc * nr;
                int cols = Math.Min(nr, nc - pj * nr);
                int jStart = j0 + pj * nr;
                if (!transB)
                {
                    float* src = pb + bOffset + (long)p0 * ldb + jStart;
                    for (int p = 0; p < kc; p++, src += ldb)
                    {
                        // Only the last, partial panel is left here: whole ones were dealt out above.
                        float* dst = d + p * nr;
                        int j = 0;
                        for (; j < cols; j++) dst[j] = src[j];
                        for (; j < nr; j++) dst[j] = 0f;
                    }
                    continue;
                }
                // op(B) = B^T: column j of the panel is row jStart + j of B; missing columns are zero.
                Transpose(pb + bOffset + (long)jStart * ldb + p0, ldb, cols, kc, d, nr);
                for (int j = cols; j < nr; j++)
                    for (int p = 0; p < kc; p++) d[p * nr + j] = 0f;
            }
        }
    }

    /// <summary>
    /// <see cref="PackB"/> from a bf16 B (a streamed weight matrix as it is mapped), widened as it is packed: the same
    /// panels, bit for bit, as packing its fp32 widening, without an fp32 copy of the matrix ever existing.
    /// </summary>
    public static void PackB(bool transB, ushort* b, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset)
    {
        int panels = (nc + nr - 1) / nr;
        fixed (float* pd = dest)
        {
            if (!transB)
            {
                // Row p of the block is row p0 + p of B: read once, start to end, widened into each panel's row.
                for (int p = 0; p < kc; p++)
                {
                    ushort* src = b + (long)(p0 + p) * ldb + j0;
                    float* dst = pd + destOffset + p * nr;
                    for (int pj = 0; pj < panels; pj++, src += nr, dst += (long)kc * nr)
                    {
                        int cols = Math.Min(nr, nc - pj * nr);
                        DTypeConversion.Bf16ToFloat(new ReadOnlySpan<ushort>(src, cols), new Span<float>(dst, cols));
                        for (int j = cols; j < nr; j++) dst[j] = 0f;
                    }
                }
                return;
            }
            // op(B) = B^T: column j of a panel is row jStart + j of B. Eight rows at a time are widened into a scratch
            // (kc x 8 floats, in L1/L2) and transposed from there as the fp32 case transposes B itself.
            var scratch = _widened ??= GC.AllocateUninitializedArray<float>(8 * Sgemm.KCSingle, pinned: true);
            if (scratch.Length < 8 * kc) _widened = scratch = GC.AllocateUninitializedArray<float>(8 * kc, pinned: true);
            fixed (float* ws = scratch)
                for (int pj = 0; pj < panels; pj++)
                {
                    float* d = pd + destOffset + (long)pj * kc * nr;
                    int cols = Math.Min(nr, nc - pj * nr), jStart = j0 + pj * nr;
                    for (int g = 0; g < cols; g += 8)
                    {
                        int rows = Math.Min(8, cols - g);
                        for (int j = 0; j < rows; j++)
                            DTypeConversion.Bf16ToFloat(new ReadOnlySpan<ushort>(b + (long)(jStart + g + j) * ldb + p0, kc), new Span<float>(ws + j * kc, kc));
                        Transpose(ws, kc, rows, kc, d + g, nr);
                    }
                    for (int j = cols; j < nr; j++)
                        for (int p = 0; p < kc; p++) d[p * nr + j] = 0f;
                }
        }
    }

    [ThreadStatic] private static float[]? _widened;

    /// <summary>
    /// d[p * nr + j] = src[j * lds + p] for rows j &lt; rows and p &lt; kc: groups of 8 rows in 8 x 8 AVX transposes, then
    /// groups of 4 in 4 x 4 ones (SSE, or NEON on ARM64, which has no wider vectors), the rest one value at a time.
    /// </summary>
    // Fully optimised from the first call: without it `-- pack8b` packed the 8B W^T at half the speed (35 against 17 ms).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose(float* src, int lds, int rows, int kc, float* d, int nr)
    {
        int g = 0;
        if (Avx.IsSupported) g = Groups(src, lds, rows, kc, d, nr, g, 8);
        if (Sse.IsSupported || AdvSimd.Arm64.IsSupported) g = Groups(src, lds, rows, kc, d, nr, g, 4);
        for (; g < rows; g++)
        {
            float* s = src + (long)g * lds;
            for (int p = 0; p < kc; p++) d[p * nr + g] = s[p];
        }
    }

    /// <summary>Rows g.. in whole groups of width (8: AVX, 4: SSE/NEON) while one is left; returns the first row left over.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Groups(float* src, int lds, int rows, int kc, float* d, int nr, int g, int width)
    {
        for (; g + width <= rows; g += width)
        {
            float* s = src + (long)g * lds;
            int p = 0;
            for (; p + width <= kc; p += width)
                if (width == 8) Transpose8(s + p, lds, d + p * nr + g, nr);
                else Transpose4(s + p, lds, d + p * nr + g, nr);
            for (; p < kc; p++)
                for (int j = 0; j < width; j++) d[p * nr + g + j] = s[(long)j * lds + p];
        }
        return g;
    }

    /// <summary>dst[p * ldd + j] = src[j * lds + p] for a 4 x 4 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4(float* src, int lds, float* dst, int ldd)
    {
        var r0 = Vector128.Load(src);
        var r1 = Vector128.Load(src + lds);
        var r2 = Vector128.Load(src + 2L * lds);
        var r3 = Vector128.Load(src + 3L * lds);
        if (AdvSimd.Arm64.IsSupported)
        {
            // Interleave row pairs by element, then the pairs by 64-bit halves.
            var t0 = AdvSimd.Arm64.ZipLow(r0, r1).AsDouble();
            var t1 = AdvSimd.Arm64.ZipHigh(r0, r1).AsDouble();
            var t2 = AdvSimd.Arm64.ZipLow(r2, r3).AsDouble();
            var t3 = AdvSimd.Arm64.ZipHigh(r2, r3).AsDouble();
            Vector128.Store(AdvSimd.Arm64.ZipLow(t0, t2).AsSingle(), dst);
            Vector128.Store(AdvSimd.Arm64.ZipHigh(t0, t2).AsSingle(), dst + ldd);
            Vector128.Store(AdvSimd.Arm64.ZipLow(t1, t3).AsSingle(), dst + 2L * ldd);
            Vector128.Store(AdvSimd.Arm64.ZipHigh(t1, t3).AsSingle(), dst + 3L * ldd);
        }
        else
        {
            var t0 = Sse.UnpackLow(r0, r1);
            var t1 = Sse.UnpackHigh(r0, r1);
            var t2 = Sse.UnpackLow(r2, r3);
            var t3 = Sse.UnpackHigh(r2, r3);
            Vector128.Store(Sse.MoveLowToHigh(t0, t2), dst);
            Vector128.Store(Sse.MoveHighToLow(t2, t0), dst + ldd);
            Vector128.Store(Sse.MoveLowToHigh(t1, t3), dst + 2L * ldd);
            Vector128.Store(Sse.MoveHighToLow(t3, t1), dst + 3L * ldd);
        }
    }

    /// <summary>dst[0..nr) = src[0..nr) in the widest vectors the machine has (nr is a kernel's panel width).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* src, float* dst, int nr)
    {
        int j = 0;
        if (Avx.IsSupported)
            for (; j + 8 <= nr; j += 8) Avx.Store(dst + j, Avx.LoadVector256(src + j));
        if (Vector128.IsHardwareAccelerated)
            for (; j + 4 <= nr; j += 4) Vector128.Store(Vector128.Load(src + j), dst + j);
        for (; j < nr; j++) dst[j] = src[j];
    }

    /// <summary>dst[p * ldd + j] = src[j * lds + p] for an 8 x 8 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(float* src, int lds, float* dst, int ldd)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2L * lds);
        var r3 = Avx.LoadVector256(src + 3L * lds);
        var r4 = Avx.LoadVector256(src + 4L * lds);
        var r5 = Avx.LoadVector256(src + 5L * lds);
        var r6 = Avx.LoadVector256(src + 6L * lds);
        var r7 = Avx.LoadVector256(src + 7L * lds);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2L * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3L * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4L * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5L * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6L * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7L * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }
}
