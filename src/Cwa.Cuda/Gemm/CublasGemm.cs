using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Cwa.Cuda.Gemm;

/// <summary>
/// Matrix products through cublasGemmEx / cublasGemmBatchedEx on ILGPU's CUDA stream. Row-major C = op(A) op(B) is
/// computed as the column-major C^T = op(B)^T op(A)^T, so operands are passed swapped and nothing is transposed.
/// bf16/fp16 inputs run on tensor cores with fp32 accumulation; fp32 inputs use plain fp32 arithmetic
/// (CUBLAS_COMPUTE_32F, no TF32) so an fp32 model reproduces a reference run, while the fp32 attention
/// products of a half-precision model may use TF32.
/// </summary>
public sealed unsafe class CublasGemm : IDeviceGemm
{
    private readonly CublasApi _api;
    private readonly IntPtr _handle;
    private readonly Accelerator _acc;
    private readonly bool _tf32ForFloat;
    // Device arrays of A/B/C pointers for batched calls, keyed by their contents: the workspace's addresses are
    // stable, so after the first batch every call finds its arrays here and nothing is uploaded.
    private readonly Dictionary<PointerKey, MemoryBuffer1D<long, Stride1D.Dense>> _pointerArrays = [];

    internal CublasGemm(CublasApi api, CudaAccelerator acc, bool tf32ForFloat)
    {
        _api = api;
        _acc = acc;
        _tf32ForFloat = tf32ForFloat;
        IntPtr h;
        CublasApi.Check(api.Create(&h), "cublasCreate");
        _handle = h;
        CublasApi.Check(api.SetStream(_handle, ((CudaStream)acc.DefaultStream).StreamPtr), "cublasSetStream");
    }

    public string Name => $"cuBLAS ({_api.LibraryPath})";

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, in Operand a, in Operand b, float beta, ArrayView<float> c, long cOffset, int ldc)
    {
        if (m == 0 || n == 0) return;
        if (a.Format != b.Format) throw new ArgumentException($"GEMM operands must share a format ({a.Format} vs {b.Format})");
        int type = DataType(a.Format);
        int compute = a.Format == StorageFormat.F32 && _tf32ForFloat ? CublasApi.Compute32FFastTf32 : CublasApi.Compute32F;
        float al = alpha, be = beta;
        var call = ColumnMajorCall.For(transA, transB, m, n, k, a.Ld, b.Ld);
        CublasApi.Check(_api.GemmEx(_handle, call.OpFirst, call.OpSecond, call.M, call.N, call.K, &al,
            b.Address, type, call.LdFirst, a.Address, type, call.LdSecond, &be, DeviceAddress.Of(c, cOffset), CublasApi.R32F, ldc, compute, CublasApi.GemmDefault), "cublasGemmEx");
    }

    public void GemmBatched(bool transA, bool transB, int m, int n, int k, float alpha, ArrayView<float> a, long[] aOffsets, int lda,
        ArrayView<float> b, long[] bOffsets, int ldb, float beta, ArrayView<float> c, long[] cOffsets, int ldc)
    {
        int count = aOffsets.Length;
        if (count == 0 || m == 0 || n == 0) return;
        var pointers = new long[3 * count];
        for (int i = 0; i < count; i++)
        {
            pointers[i] = DeviceAddress.Of(b, bOffsets[i]);
            pointers[count + i] = DeviceAddress.Of(a, aOffsets[i]);
            pointers[2 * count + i] = DeviceAddress.Of(c, cOffsets[i]);
        }
        var key = new PointerKey(pointers);
        if (!_pointerArrays.TryGetValue(key, out var array))
            _pointerArrays[key] = array = _acc.Allocate1D(pointers);
        IntPtr p = DeviceAddress.Of(array.View.BaseView, 0);
        int compute = _tf32ForFloat ? CublasApi.Compute32FFastTf32 : CublasApi.Compute32F;
        float al = alpha, be = beta;
        var call = ColumnMajorCall.For(transA, transB, m, n, k, lda, ldb);
        CublasApi.Check(_api.GemmBatchedEx(_handle, call.OpFirst, call.OpSecond, call.M, call.N, call.K, &al,
            p, CublasApi.R32F, call.LdFirst, p + count * sizeof(long), CublasApi.R32F, call.LdSecond, &be, p + 2 * count * sizeof(long), CublasApi.R32F, ldc,
            count, compute, CublasApi.GemmDefault), "cublasGemmBatchedEx");
    }

    private static int DataType(StorageFormat f) => f switch
    {
        StorageFormat.Bf16 => CublasApi.R16BF,
        StorageFormat.F16 => CublasApi.R16F,
        _ => CublasApi.R32F,
    };

    public void Dispose()
    {
        foreach (var a in _pointerArrays.Values) a.Dispose();
        _pointerArrays.Clear();
        _api.Destroy(_handle);
    }

    private sealed class PointerKey(long[] values) : IEquatable<PointerKey>
    {
        private readonly long[] _values = values;
        private readonly int _hash = ComputeHash(values);

        private static int ComputeHash(long[] v)
        {
            var h = new HashCode();
            foreach (long x in v) h.Add(x);
            return h.ToHashCode();
        }

        public bool Equals(PointerKey? other) => other != null && _values.AsSpan().SequenceEqual(other._values);
        public override bool Equals(object? obj) => Equals(obj as PointerKey);
        public override int GetHashCode() => _hash;
    }
}

/// <summary>
/// cuBLAS is column-major: a row-major C = op(A) op(B) (m x n) is the column-major C^T = op(B)^T op(A)^T (n x m),
/// and a row-major matrix read column-major is its transpose. So cuBLAS gets B first and A second, each with
/// its own transpose flag and leading dimension, and m and n swapped. Nothing is copied or transposed.
/// </summary>
internal readonly record struct ColumnMajorCall(int OpFirst, int OpSecond, int M, int N, int K, int LdFirst, int LdSecond)
{
    public static ColumnMajorCall For(bool transA, bool transB, int m, int n, int k, int lda, int ldb) =>
        new(transB ? CublasApi.OpT : CublasApi.OpN, transA ? CublasApi.OpT : CublasApi.OpN, n, m, k, ldb, lda);
}
