using ILGPU;

namespace Cwa.Cuda;

/// <summary>
/// Row-major C = alpha * op(A) * op(B) + beta * C, one output element per thread. The fallback for accelerators
/// without cuBLAS (ILGPU's CPU accelerator in CI); on a GPU the backend calls cublasGemmEx instead.
/// </summary>
public static class GemmKernel
{
    public readonly record struct Shape(int M, int N, int K, int TransA, int TransB, int Lda, int Ldb, int Ldc, float Alpha, float Beta);

    public static void Compute(Index1D idx, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, Shape s)
    {
        int i = idx / s.N, j = idx % s.N;
        float sum = 0;
        for (int p = 0; p < s.K; p++)
        {
            float av = s.TransA != 0 ? a[(long)p * s.Lda + i] : a[(long)i * s.Lda + p];
            float bv = s.TransB != 0 ? b[(long)j * s.Ldb + p] : b[(long)p * s.Ldb + j];
            sum += av * bv;
        }
        long o = (long)i * s.Ldc + j;
        c[o] = s.Beta == 0f ? s.Alpha * sum : s.Alpha * sum + s.Beta * c[o];
    }
}
