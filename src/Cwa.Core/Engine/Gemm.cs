using System.Numerics;
using System.Runtime.CompilerServices;

namespace Cwa.Core.Engine;

/// <summary>
/// Row-major GEMM: C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
/// op(A) is [m, k], op(B) is [k, n]; lda/ldb/ldc are row strides of the stored matrices.
/// beta == 0 overwrites C (NaNs in C are ignored). Float goes through the packed AVX kernel,
/// double (used by the finite-difference checks) through a simple blocked loop.
/// </summary>
public static class Gemm
{
    /// <summary>Upper bound on threads a single GEMM may use (the engine sets it from --threads).</summary>
    public static int MaxThreads { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// Parallel loop for the engine's own work items (attention heads, row blocks). GEMMs called inside it run
    /// single-threaded, so the machine is not oversubscribed and results do not depend on scheduling.
    /// </summary>
    public static void ParallelFor(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count <= 1)
        {
            bool was = Sgemm.InsideParallel;
            Sgemm.InsideParallel = true;
            try { for (int i = 0; i < count; i++) body(i); }
            finally { Sgemm.InsideParallel = was; }
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
        {
            bool was = Sgemm.InsideParallel;
            Sgemm.InsideParallel = true;
            try { body(i); }
            finally { Sgemm.InsideParallel = was; }
        });
    }

    public static void Compute<T>(bool transA, bool transB, int m, int n, int k, T alpha,
        T[] a, int aOffset, int lda, T[] b, int bOffset, int ldb, T beta, T[] c, int cOffset, int ldc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (m == 0 || n == 0) return;
        if (typeof(T) == typeof(float))
        {
            Sgemm.Compute(transA, transB, m, n, k, float.CreateTruncating(alpha),
                Unsafe.As<float[]>(a), aOffset, lda, Unsafe.As<float[]>(b), bOffset, ldb,
                float.CreateTruncating(beta), Unsafe.As<float[]>(c), cOffset, ldc);
            return;
        }
        if (typeof(T) == typeof(double))
        {
            Dgemm.Compute(transA, transB, m, n, k, double.CreateTruncating(alpha), Unsafe.As<double[]>(a), aOffset, lda,
                Unsafe.As<double[]>(b), bOffset, ldb, double.CreateTruncating(beta), Unsafe.As<double[]>(c), cOffset, ldc);
            return;
        }
        ReferenceGemm.Compute(transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc);
    }
}
