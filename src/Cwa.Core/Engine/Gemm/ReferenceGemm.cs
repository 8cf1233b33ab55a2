using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>
/// Straightforward GEMM in i-p-j order (contiguous inner loop when B is not transposed). Used for double
/// precision, where only tiny gradient-check models run, and as the fallback for odd float cases.
/// </summary>
internal static class ReferenceGemm
{
    public static void Compute<T>(bool transA, bool transB, int m, int n, int k, T alpha,
        T[] a, int aOffset, int lda, T[] b, int bOffset, int ldb, T beta, T[] c, int cOffset, int ldc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var row = new T[n];
        for (int i = 0; i < m; i++)
        {
            Array.Clear(row);
            for (int p = 0; p < k; p++)
            {
                T av = transA ? a[aOffset + p * lda + i] : a[aOffset + i * lda + p];
                if (transB)
                    for (int j = 0; j < n; j++) row[j] += av * b[bOffset + j * ldb + p];
                else
                {
                    int bo = bOffset + p * ldb;
                    for (int j = 0; j < n; j++) row[j] += av * b[bo + j];
                }
            }
            int co = cOffset + i * ldc;
            if (beta == T.Zero)
                for (int j = 0; j < n; j++) c[co + j] = alpha * row[j];
            else
                for (int j = 0; j < n; j++) c[co + j] = alpha * row[j] + beta * c[co + j];
        }
    }
}
