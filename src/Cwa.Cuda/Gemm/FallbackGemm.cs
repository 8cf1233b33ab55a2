using Cwa.Cuda.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Gemm;

/// <summary>Matrix products as plain ILGPU kernels: what runs on ILGPU's CPU accelerator, where there is no cuBLAS.</summary>
public sealed class FallbackGemm : IDeviceGemm
{
    private readonly Accelerator _acc;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _noFloats;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _noHalves;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmKernel.Args> _gemm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<long>, GemmKernel.Args> _batched;

    public FallbackGemm(Accelerator acc)
    {
        _acc = acc;
        // Kernels cannot take a missing view, so the unused one of each operand's pair points at a 1-element buffer.
        _noFloats = acc.Allocate1D<float>(1);
        _noHalves = acc.Allocate1D<ushort>(1);
        _gemm = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmKernel.Args>(GemmKernel.Compute);
        _batched = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<long>, GemmKernel.Args>(GemmKernel.ComputeBatched);
    }

    public string Name => "ilgpu";

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, in Operand a, in Operand b, float beta, ArrayView<float> c, long cOffset, int ldc)
    {
        if (m == 0 || n == 0) return;
        if (a.Format != b.Format) throw new ArgumentException($"GEMM operands must share a format ({a.Format} vs {b.Format})");
        var args = new GemmKernel.Args
        {
            M = m, N = n, K = k, TransA = transA ? 1 : 0, TransB = transB ? 1 : 0, Lda = a.Ld, Ldb = b.Ld, Ldc = ldc,
            FormatA = (int)a.Format, FormatB = (int)b.Format, OffsetA = a.Offset, OffsetB = b.Offset, OffsetC = cOffset, Alpha = alpha, Beta = beta,
        };
        _gemm(m * n, Floats(a), Halves(a), Floats(b), Halves(b), c, args);
    }

    public void GemmBatched(bool transA, bool transB, int m, int n, int k, float alpha, ArrayView<float> a, long[] aOffsets, int lda,
        ArrayView<float> b, long[] bOffsets, int ldb, float beta, ArrayView<float> c, long[] cOffsets, int ldc)
    {
        int count = aOffsets.Length;
        if (count == 0 || m == 0 || n == 0) return;
        using var oa = _acc.Allocate1D(aOffsets);
        using var ob = _acc.Allocate1D(bOffsets);
        using var oc = _acc.Allocate1D(cOffsets);
        var args = new GemmKernel.Args { M = m, N = n, K = k, TransA = transA ? 1 : 0, TransB = transB ? 1 : 0, Lda = lda, Ldb = ldb, Ldc = ldc, FormatA = -1, FormatB = -1, Alpha = alpha, Beta = beta };
        _batched(count * m * n, a, b, c, oa.View, ob.View, oc.View, args);
        // The offset buffers are freed on return, so the launch must have finished with them.
        _acc.Synchronize();
    }

    private ArrayView<float> Floats(in Operand o) => o.Format == StorageFormat.F32 ? o.F32 : _noFloats.View;
    private ArrayView<ushort> Halves(in Operand o) => o.Format == StorageFormat.F32 ? _noHalves.View : o.HalfBits;

    public void Dispose()
    {
        _noFloats.Dispose();
        _noHalves.Dispose();
    }
}
