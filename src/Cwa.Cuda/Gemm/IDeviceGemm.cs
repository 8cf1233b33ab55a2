using ILGPU;

namespace Cwa.Cuda.Gemm;

/// <summary>
/// Row-major matrix products on device memory: C = alpha * op(A) * op(B) + beta * C with fp32 C and fp32
/// accumulation; A and B share one storage format (fp32, or bf16/fp16 like cublasGemmEx's inputs).
/// </summary>
public interface IDeviceGemm : IDisposable
{
    string Name { get; }

    void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, in Operand a, in Operand b, float beta, ArrayView<float> c, long cOffset, int ldc);

    /// <summary>fp32 products of equal shape; problem i reads A, B and writes C at the given element offsets.</summary>
    void GemmBatched(bool transA, bool transB, int m, int n, int k, float alpha, ArrayView<float> a, long[] aOffsets, int lda,
        ArrayView<float> b, long[] bOffsets, int ldb, float beta, ArrayView<float> c, long[] cOffsets, int ldc);
}
