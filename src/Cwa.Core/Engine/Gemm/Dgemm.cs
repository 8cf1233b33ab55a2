using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// Double-precision GEMM for the fp64 passes (Hutchinson's gradient differences, gradient checks): rows of C in
/// parallel, each element from vectorised dot products (B transposed) or vectorised row updates (B as stored), op(A)
/// packed row-contiguous first when A is transposed. Every element of C is computed by one thread in a fixed order,
/// so results do not depend on the thread count.
/// </summary>
internal static class Dgemm
{
    private const long ParallelWork = 1L << 18;

    public static void Compute(bool transA, bool transB, int m, int n, int k, double alpha,
        double[] a, int aOffset, int lda, double[] b, int bOffset, int ldb, double beta, double[] c, int cOffset, int ldc)
    {
        var (ap, apOffset, apLd) = transA ? (PackTransposed(a, aOffset, lda, k, m), 0, k) : (a, aOffset, lda);
        int blocks = (m + RowBlock - 1) / RowBlock;
        bool parallel = !Sgemm.InsideParallel && Gemm.MaxThreads > 1 && (long)m * n * k >= ParallelWork && blocks > 1;
        // Up to four rows of C at a time share every row of B they read, while it is in L1.
        void Block(int blk, double[] scratch)
        {
            int i0 = blk * RowBlock, rows = Math.Min(RowBlock, m - i0);
            if (transB)
                for (int j = 0; j < n; j++)
                {
                    var bRow = b.AsSpan(bOffset + j * ldb, k);
                    for (int r = 0; r < rows; r++)
                    {
                        double dot = TensorPrimitives.Dot<double>(ap.AsSpan(apOffset + (i0 + r) * apLd, k), bRow);
                        ref double cv = ref c[cOffset + (i0 + r) * ldc + j];
                        cv = alpha * dot + (beta == 0 ? 0 : beta * cv);
                    }
                }
            else
            {
                var acc = scratch.AsSpan(0, rows * n);
                acc.Clear();
                for (int p = 0; p < k; p++)
                {
                    var bRow = b.AsSpan(bOffset + p * ldb, n);
                    for (int r = 0; r < rows; r++)
                    {
                        var accRow = acc.Slice(r * n, n);
                        TensorPrimitives.MultiplyAdd<double>(bRow, ap[apOffset + (i0 + r) * apLd + p], accRow, accRow);
                    }
                }
                for (int r = 0; r < rows; r++)
                {
                    var cRow = c.AsSpan(cOffset + (i0 + r) * ldc, n);
                    var accRow = acc.Slice(r * n, n);
                    if (beta == 0) TensorPrimitives.Multiply<double>(accRow, alpha, cRow);
                    else
                        for (int j = 0; j < n; j++) cRow[j] = alpha * accRow[j] + beta * cRow[j];
                }
            }
        }
        double[] NewScratch() => transB ? [] : new double[RowBlock * n];
        if (!parallel)
        {
            var scratch = NewScratch();
            for (int blk = 0; blk < blocks; blk++) Block(blk, scratch);
            return;
        }
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Gemm.MaxThreads }, NewScratch, (blk, _, scratch) =>
        {
            Block(blk, scratch);
            return scratch;
        }, _ => { });
    }

    private const int RowBlock = 4;

    /// <summary>op(A) = A^T of a stored [k, m] matrix as a row-major [m, k] copy.</summary>
    private static double[] PackTransposed(double[] a, int offset, int lda, int k, int m)
    {
        var t = new double[(long)m * k];
        for (int p = 0; p < k; p++)
        {
            int row = offset + p * lda;
            for (int i = 0; i < m; i++) t[(long)i * k + p] = a[row + i];
        }
        return t;
    }
}
