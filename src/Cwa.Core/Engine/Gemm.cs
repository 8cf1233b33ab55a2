using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>
/// Row-major GEMM: C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
/// op(A) is [m, k], op(B) is [k, n]; lda/ldb/ldc are row strides of the stored matrices.
/// Placeholder reference loop: the optimised implementation replaces the body, keeping this signature.
/// </summary>
public static class Gemm
{
    public static void Compute<T>(bool transA, bool transB, int m, int n, int k, T alpha,
        T[] a, int aOffset, int lda, T[] b, int bOffset, int ldb, T beta, T[] c, int cOffset, int ldc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                T sum = T.Zero;
                for (int p = 0; p < k; p++)
                {
                    T av = transA ? a[aOffset + p * lda + i] : a[aOffset + i * lda + p];
                    T bv = transB ? b[bOffset + j * ldb + p] : b[bOffset + p * ldb + j];
                    sum += av * bv;
                }
                ref T cv = ref c[cOffset + i * ldc + j];
                cv = beta == T.Zero ? alpha * sum : alpha * sum + beta * cv;
            }
    }
}
