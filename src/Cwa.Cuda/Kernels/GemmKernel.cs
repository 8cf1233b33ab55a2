using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// Row-major C = alpha * op(A) * op(B) + beta * C, one output element per thread, products summed in k order in
/// fp32. The fallback for accelerators without cuBLAS (ILGPU's CPU accelerator in CI); on a GPU the backend calls
/// cublasGemmEx instead. Operands are fp32 (format -1) or bf16/fp16 bit patterns (format 0/1), like GemmEx's inputs.
/// </summary>
public static class GemmKernel
{
    public struct Args
    {
        public int M, N, K, TransA, TransB, Lda, Ldb, Ldc, FormatA, FormatB;
        public long OffsetA, OffsetB, OffsetC;
        public float Alpha, Beta;
    }

    private static float Load(ArrayView<float> f, ArrayView<ushort> h, int format, long i) => format < 0 ? f[i] : HalfBits.ToFloat(h[i], format);

    public static void Compute(Index1D idx, ArrayView<float> aF, ArrayView<ushort> aH, ArrayView<float> bF, ArrayView<ushort> bH, ArrayView<float> c, Args s)
    {
        int i = idx / s.N, j = idx % s.N;
        float sum = 0;
        for (int p = 0; p < s.K; p++)
        {
            long ai = s.OffsetA + (s.TransA != 0 ? (long)p * s.Lda + i : (long)i * s.Lda + p);
            long bi = s.OffsetB + (s.TransB != 0 ? (long)j * s.Ldb + p : (long)p * s.Ldb + j);
            sum += Load(aF, aH, s.FormatA, ai) * Load(bF, bH, s.FormatB, bi);
        }
        long o = s.OffsetC + (long)i * s.Ldc + j;
        c[o] = s.Beta == 0f ? s.Alpha * sum : s.Alpha * sum + s.Beta * c[o];
    }

    /// <summary>fp32 batched form: problem b uses A, B and C at element offsets offA[b], offB[b], offC[b].</summary>
    public static void ComputeBatched(Index1D idx, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<long> offA, ArrayView<long> offB, ArrayView<long> offC, Args s)
    {
        int per = s.M * s.N;
        int batch = idx / per, e = idx % per;
        int i = e / s.N, j = e % s.N;
        long oa = offA[batch], ob = offB[batch];
        float sum = 0;
        for (int p = 0; p < s.K; p++)
        {
            float av = s.TransA != 0 ? a[oa + (long)p * s.Lda + i] : a[oa + (long)i * s.Lda + p];
            float bv = s.TransB != 0 ? b[ob + (long)j * s.Ldb + p] : b[ob + (long)p * s.Ldb + j];
            sum += av * bv;
        }
        long o = offC[batch] + (long)i * s.Ldc + j;
        c[o] = s.Beta == 0f ? s.Alpha * sum : s.Alpha * sum + s.Beta * c[o];
    }
}
