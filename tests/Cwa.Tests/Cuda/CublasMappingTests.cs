using Cwa.Core;
using Cwa.Core.Engine;
using Cwa.Cuda.Gemm;

namespace Cwa.Tests.Cuda;

/// <summary>
/// The arguments handed to cublasGemmEx, checked without a GPU: a column-major GEMM written from cuBLAS's
/// documented semantics, fed exactly what ColumnMajorCall produces, must give the row-major product.
/// </summary>
public class CublasMappingTests
{
    /// <summary>C = op(A) op(B) in cuBLAS's column-major convention (element (i, j) of X at x[i + j * ldx]).</summary>
    private static void CublasReference(int opA, int opB, int m, int n, int k, float[] a, int lda, float[] b, int ldb, float[] c, int ldc)
    {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (double)(opA == CublasApi.OpT ? a[p + i * lda] : a[i + p * lda]) * (opB == CublasApi.OpT ? b[j + p * ldb] : b[p + j * ldb]);
                c[i + j * ldc] = (float)s;
            }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void TheColumnMajorCallComputesTheRowMajorProduct(bool ta, bool tb)
    {
        int m = 7, n = 5, k = 9;
        int lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 3, ldc = n + 1;
        var r = new SplitMix64(4);
        var a = Enumerable.Range(0, (ta ? k : m) * lda).Select(_ => (float)r.NextGaussian()).ToArray();
        var b = Enumerable.Range(0, (tb ? n : k) * ldb).Select(_ => (float)r.NextGaussian()).ToArray();
        var expected = new float[m * ldc];
        Gemm.Compute(ta, tb, m, n, k, 1f, a, 0, lda, b, 0, ldb, 0f, expected, 0, ldc);

        var call = ColumnMajorCall.For(ta, tb, m, n, k, lda, ldb);
        // cuBLAS rejects (CUBLAS_STATUS_INVALID_VALUE) leading dimensions below the stored column-major rows.
        Assert.True(call.LdFirst >= (call.OpFirst == CublasApi.OpN ? call.M : call.K));
        Assert.True(call.LdSecond >= (call.OpSecond == CublasApi.OpN ? call.K : call.N));
        Assert.True(ldc >= call.M);
        var c = new float[m * ldc];
        CublasReference(call.OpFirst, call.OpSecond, call.M, call.N, call.K, b, call.LdFirst, a, call.LdSecond, c, ldc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Assert.Equal(expected[i * ldc + j], c[i * ldc + j], 4);
    }
}
