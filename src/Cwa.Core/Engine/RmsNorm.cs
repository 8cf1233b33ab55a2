using System.Numerics;
using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// RMSNorm as in Hugging Face Llama: y = w * x * r, r = 1 / sqrt(mean(x^2) + eps).
/// Backward with g = dy * w: dx = r * g - x * r^3 * (g . x) / D, dw += sum over rows of dy * x * r.
/// </summary>
internal static class RmsNorm<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static void Forward(T[] x, T[] w, T[] y, T[] rinv, int rows, int dim, double eps, int threads)
    {
        Gemm.ParallelFor(Blocks(rows), threads, blk =>
        {
            for (int r = blk * RowBlock; r < Math.Min(rows, (blk + 1) * RowBlock); r++)
            {
                var xr = x.AsSpan(r * dim, dim);
                double ss = double.CreateTruncating(TensorPrimitives.SumOfSquares<T>(xr));
                T ri = T.CreateTruncating(1.0 / Math.Sqrt(ss / dim + eps));
                rinv[r] = ri;
                var yr = y.AsSpan(r * dim, dim);
                TensorPrimitives.Multiply(xr, ri, yr);
                TensorPrimitives.Multiply(yr, w, yr);
            }
        });
    }

    /// <summary>Adds the input gradient into dx (beta = 1 semantics) and accumulates dw.</summary>
    public static void Backward(T[] x, T[] w, T[] rinv, T[] dy, T[] dx, T[] dw, int rows, int dim, int threads)
    {
        Gemm.ParallelFor(Blocks(rows), threads, blk =>
        {
            var g = new T[dim];
            for (int r = blk * RowBlock; r < Math.Min(rows, (blk + 1) * RowBlock); r++)
            {
                var xr = x.AsSpan(r * dim, dim);
                var dyr = dy.AsSpan(r * dim, dim);
                TensorPrimitives.Multiply(dyr, w, g);
                T ri = rinv[r];
                T dot = TensorPrimitives.Dot<T>(g, xr);
                T coef = ri * ri * ri * dot / T.CreateTruncating(dim);
                var dxr = dx.AsSpan(r * dim, dim);
                TensorPrimitives.MultiplyAdd<T>(g, ri, dxr, dxr);
                TensorPrimitives.MultiplyAdd<T>(xr, -coef, dxr, dxr);
            }
        });
        // Weight gradient summed row by row in a fixed order, so it is deterministic.
        var tmp = new T[dim];
        for (int r = 0; r < rows; r++)
        {
            var xr = x.AsSpan(r * dim, dim);
            TensorPrimitives.Multiply(xr, rinv[r], tmp);
            TensorPrimitives.MultiplyAdd<T>(tmp, dy.AsSpan(r * dim, dim), dw, dw);
        }
    }

    private const int RowBlock = 16;
    private static int Blocks(int rows) => (rows + RowBlock - 1) / RowBlock;
}
