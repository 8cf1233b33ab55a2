namespace Cwa.Core.Engine;

/// <summary>
/// Copies blocks of op(A) and op(B) into the panel layouts the micro-kernels stream through, zero-padding
/// partial panels so the kernels never branch on edges inside the k loop.
/// </summary>
internal static class Packing
{
    /// <summary>op(A)[i0.., p0..] -> panels of mr rows: dest[(panel*kc + p)*mr + r].</summary>
    public static void PackA(bool transA, float[] a, int aOffset, int lda, int i0, int mc, int p0, int kc, int mr, float[] dest)
    {
        int panels = (mc + mr - 1) / mr;
        if (transA)
        {
            // op(A) = A^T: row p of A holds op(A)[*, p] contiguously, so walk p outside and i inside. Walking i
            // outside would stride a whole row per element (32 KB for the lm_head gradient), a new page each time.
            for (int p = 0; p < kc; p++)
            {
                int src = aOffset + (p0 + p) * lda + i0;
                for (int pi = 0; pi < panels; pi++)
                {
                    int dst = pi * kc * mr + p * mr, rows = Math.Min(mr, mc - pi * mr);
                    new ReadOnlySpan<float>(a, src + pi * mr, rows).CopyTo(new Span<float>(dest, dst, rows));
                    if (rows < mr) new Span<float>(dest, dst + rows, mr - rows).Clear();
                }
            }
            return;
        }
        for (int pi = 0; pi < panels; pi++)
        {
            int baseDst = pi * kc * mr;
            for (int r = 0; r < mr; r++)
            {
                int i = pi * mr + r;
                if (i >= mc)
                {
                    for (int p = 0; p < kc; p++) dest[baseDst + p * mr + r] = 0f;
                    continue;
                }
                int src = aOffset + (i0 + i) * lda + p0;
                for (int p = 0; p < kc; p++) dest[baseDst + p * mr + r] = a[src + p];
            }
        }
    }

    /// <summary>op(B)[p0.., j0..] -> panels of nr columns: dest[(panel*kc + p)*nr + j].</summary>
    public static void PackB(bool transB, float[] b, int bOffset, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset)
    {
        int panels = (nc + nr - 1) / nr;
        for (int pj = 0; pj < panels; pj++)
        {
            int baseDst = destOffset + pj * kc * nr;
            int cols = Math.Min(nr, nc - pj * nr);
            int jStart = j0 + pj * nr;
            if (!transB)
            {
                for (int p = 0; p < kc; p++)
                {
                    var src = new ReadOnlySpan<float>(b, bOffset + (p0 + p) * ldb + jStart, cols);
                    var dst = new Span<float>(dest, baseDst + p * nr, nr);
                    src.CopyTo(dst);
                    if (cols < nr) dst[cols..].Clear();
                }
            }
            else
            {
                for (int j = 0; j < nr; j++)
                {
                    if (j >= cols)
                    {
                        for (int p = 0; p < kc; p++) dest[baseDst + p * nr + j] = 0f;
                        continue;
                    }
                    int src = bOffset + (jStart + j) * ldb + p0;
                    for (int p = 0; p < kc; p++) dest[baseDst + p * nr + j] = b[src + p];
                }
            }
        }
    }
}
