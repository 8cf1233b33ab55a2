using Cwa.Cuda.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda;

/// <summary>
/// The engine's non-GEMM kernels, compiled once per accelerator and launched on its default stream (where cuBLAS
/// runs too, so launches stay in order). Row kernels get one group per row of up to 256 threads (fewer on
/// accelerators that allow less, e.g. 16 on ILGPU's CPU accelerator).
/// </summary>
public sealed class DeviceOps : IDisposable
{
    private readonly Accelerator _acc;
    private readonly int _group;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> _swigluFwd, _add;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _swigluBwd;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int> _rope;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _addBias;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float> _foldBatch;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, int> _toHalf;
    private readonly Action<Index1D, ArrayView<ushort>, ArrayView<float>, int> _fromHalf;
    private readonly Action<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<float>> _scatterF32;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>> _gatherF32;
    private readonly Action<Index1D, ArrayView<ushort>, ArrayView<long>, ArrayView<float>, int> _gatherHalf;
    private readonly Action<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<ushort>, int> _scatterHalf;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int> _embedF32, _gatherRows, _scatterRows;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, int, int> _embedHalf;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>, int, int, int> _columnPartials;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _columnFinish;
    private const int ColumnChunk = 64;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int> _embedGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsFwd;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _rmsBwd;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, int> _softmax;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _softmaxBwd;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int, float, int> _crossEntropy;

    public DeviceOps(Accelerator acc)
    {
        _acc = acc;
        _group = 1;
        while (_group * 2 <= Math.Min(RowKernels.MaxGroup, acc.MaxNumThreadsPerGroup)) _group *= 2;
        _swigluFwd = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(PointwiseKernels.SwiGluForward);
        _add = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(PointwiseKernels.Add);
        _swigluBwd = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(PointwiseKernels.SwiGluBackward);
        _rope = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(PointwiseKernels.Rope);
        _addBias = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(PointwiseKernels.AddBias);
        _foldBatch = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(PointwiseKernels.FoldBatch);
        _toHalf = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, int>(PointwiseKernels.ToHalf);
        _fromHalf = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<float>, int>(PointwiseKernels.FromHalf);
        _scatterF32 = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<float>>(PointwiseKernels.ScatterF32);
        _gatherF32 = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>>(PointwiseKernels.GatherF32);
        _gatherHalf = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<long>, ArrayView<float>, int>(PointwiseKernels.GatherHalf);
        _scatterHalf = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, ArrayView<float>, ArrayView<ushort>, int>(PointwiseKernels.ScatterHalf);
        _embedF32 = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(PointwiseKernels.EmbedF32);
        _gatherRows = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(PointwiseKernels.GatherRows);
        _scatterRows = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(PointwiseKernels.ScatterRows);
        _embedHalf = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<ushort>, ArrayView<float>, int, int>(PointwiseKernels.EmbedHalf);
        _columnPartials = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>, int, int, int>(PointwiseKernels.ColumnPartials);
        _columnFinish = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(PointwiseKernels.ColumnFinish);
        _embedGrad = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(PointwiseKernels.EmbeddingGrad);
        _rmsFwd = acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RowKernels.RmsNormForward);
        _rmsBwd = acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RowKernels.RmsNormBackward);
        _softmax = acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, int>(RowKernels.CausalSoftmax);
        _softmaxBwd = acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(RowKernels.SoftmaxBackward);
        _crossEntropy = acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int, float, int>(RowKernels.CrossEntropy);
    }

    public Accelerator Accelerator => _acc;
    public int RowGroupSize => _group;

    private KernelConfig Rows(int rows) => new(rows, _group);

    public void SwiGluForward(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> h, int n) { if (n > 0) _swigluFwd(n, gate, up, h); }

    public void SwiGluBackward(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dh, ArrayView<float> dGate, ArrayView<float> dUp, int n)
    {
        if (n > 0) _swigluBwd(n, gate, up, dh, dGate, dUp);
    }

    /// <summary>Rotates every head of x [rows, heads * 2 * half] in place (inverse: the backward rotation).</summary>
    public void Rope(ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, int rows, int seqLen, int heads, int half, bool inverse)
    {
        if (rows > 0) _rope(rows * heads * half, x, cos, sin, seqLen, heads, half, inverse ? 1 : 0);
    }

    public void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> output, int n) { if (n > 0) _add(n, a, b, output); }

    /// <summary>total += scale * g, squares += g * g, g = 0 (one batch's gradient into the per-batch sums).</summary>
    public void FoldBatch(ArrayView<float> g, ArrayView<float> total, ArrayView<float> squares, float scale, long n) { if (n > 0) _foldBatch(checked((int)n), g, total, squares, scale); }

    public void AddBias(ArrayView<float> y, ArrayView<float> bias, int rows, int cols) { if (rows > 0) _addBias(rows * cols, y, bias, cols); }

    /// <summary>An fp32 activation as a GEMM operand in the weights' format (a half copy in stage when they are bf16/fp16).</summary>
    public Operand Staged(ArrayView<float> src, long count, int ld, ArrayView<ushort> stage, StorageFormat format)
    {
        if (format == StorageFormat.F32) return Operand.Float(src, 0, ld);
        ToHalf(src, stage, format, count);
        return Operand.Half(stage, format, 0, ld);
    }

    public static void Copy(ArrayView<float> src, ArrayView<float> dst, long count)
    {
        if (count > 0) src.SubView(0, count).CopyTo(dst.SubView(0, count));
    }

    public void ToHalf(ArrayView<float> src, ArrayView<ushort> dst, StorageFormat format, long n) { if (n > 0) _toHalf(checked((int)n), src, dst, (int)format); }

    public void FromHalf(ArrayView<ushort> src, ArrayView<float> dst, StorageFormat format, long n) { if (n > 0) _fromHalf(checked((int)n), src, dst, (int)format); }

    /// <summary>tensor[index[i]] = values[i], rounded to the tensor's format.</summary>
    public void Scatter(DeviceTensor tensor, ReadOnlySpan<long> index, ReadOnlySpan<float> values)
    {
        if (index.Length == 0) return;
        using var idx = _acc.Allocate1D<long>(index.Length);
        using var val = _acc.Allocate1D<float>(values.Length);
        ((ArrayView<long>)idx.View).CopyFromCPU(index);
        ((ArrayView<float>)val.View).CopyFromCPU(values);
        if (tensor.Format == StorageFormat.F32) _scatterF32(index.Length, idx.View, val.View, tensor.Floats);
        else _scatterHalf(index.Length, idx.View, val.View, tensor.Halves, (int)tensor.Format);
        _acc.Synchronize();
    }

    /// <summary>values[i] = tensor[index[i]], widened to fp32.</summary>
    public void Gather(DeviceTensor tensor, ReadOnlySpan<long> index, Span<float> values)
    {
        if (index.Length == 0) return;
        using var idx = _acc.Allocate1D<long>(index.Length);
        using var val = _acc.Allocate1D<float>(index.Length);
        ((ArrayView<long>)idx.View).CopyFromCPU(index);
        if (tensor.Format == StorageFormat.F32) _gatherF32(index.Length, tensor.Floats, idx.View, val.View);
        else _gatherHalf(index.Length, tensor.Halves, idx.View, val.View, (int)tensor.Format);
        ((ArrayView<float>)val.View).CopyToCPU(values);
    }

    /// <summary>x [rows, dim] = table rows of the tokens, widened to fp32.</summary>
    public void Embed(ArrayView<int> tokens, DeviceTensor table, ArrayView<float> x, int rows, int dim)
    {
        if (rows == 0) return;
        if (table.Format == StorageFormat.F32) _embedF32(rows * dim, tokens, table.Floats, x, dim);
        else _embedHalf(rows * dim, tokens, table.Halves, x, dim, (int)table.Format);
    }

    public void GatherRows(ArrayView<int> rows, ArrayView<float> src, ArrayView<float> dst, int count, int dim) { if (count > 0) _gatherRows(count * dim, rows, src, dst, dim); }

    public void ScatterRows(ArrayView<int> rows, ArrayView<float> src, ArrayView<float> dst, int count, int dim) { if (count > 0) _scatterRows(count * dim, rows, src, dst, dim); }

    /// <summary>output[c] += column sums of x [rows, dim].</summary>
    public void ColumnSumAdd(ArrayView<float> x, ArrayView<float> output, int rows, int dim) => ColumnSums(x, x, x, false, output, rows, dim);

    /// <summary>output[c] += sum over rows of x[r, c], or with norm of dy * x * rinv[r].</summary>
    private void ColumnSums(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> rinv, bool norm, ArrayView<float> output, int rows, int dim)
    {
        if (rows == 0) return;
        int chunks = (rows + ColumnChunk - 1) / ColumnChunk;
        long need = (long)chunks * dim;
        if (_partials == null || _partials.Length < need)
        {
            // Kernels queued earlier may still read the old buffer.
            _acc.Synchronize();
            _partials?.Dispose();
            _partials = _acc.Allocate1D<float>(need);
        }
        _columnPartials(checked((int)need), x, dy, rinv, norm ? 1 : 0, _partials.View, rows, dim, ColumnChunk);
        _columnFinish(dim, _partials.View, output, chunks, dim);
    }

    /// <summary>grad[tokens[u]] += sum of dx rows order[start[u]..start[u+1]) for each of the count segments.</summary>
    public void EmbeddingGrad(ArrayView<int> tokens, ArrayView<int> start, ArrayView<int> order, ArrayView<float> dx, ArrayView<float> grad, int count, int dim)
    {
        if (count > 0) _embedGrad(count * dim, tokens, start, order, dx, grad, dim);
    }

    public void RmsNormForward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, ArrayView<float> rinv, int rows, int dim, float eps)
    {
        if (rows > 0) _rmsFwd(Rows(rows), x, w, y, rinv, dim, eps);
    }

    /// <summary>dx += input gradient, dw += weight gradient.</summary>
    public void RmsNormBackward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> rinv, ArrayView<float> dy, ArrayView<float> dx, ArrayView<float> dw, int rows, int dim)
    {
        if (rows == 0) return;
        _rmsBwd(Rows(rows), x, w, rinv, dy, dx, dim);
        ColumnSums(x, dy, rinv, true, dw, rows, dim);
    }

    /// <summary>Scores [batch, heads, seqLen, seqLen] become causal attention probabilities in place.</summary>
    public void CausalSoftmax(ArrayView<float> scores, ArrayView<int> lengths, int batch, int heads, int seqLen)
    {
        if (batch > 0) _softmax(Rows(batch * heads * seqLen), scores, lengths, seqLen, heads);
    }

    public void SoftmaxBackward(ArrayView<float> probs, ArrayView<float> dp, ArrayView<int> lengths, int batch, int heads, int seqLen)
    {
        if (batch > 0) _softmaxBwd(Rows(batch * heads * seqLen), probs, dp, lengths, seqLen, heads);
    }

    /// <summary>Per-row NLL and arg-max hit; with grad the logits become (softmax - onehot) * scale.</summary>
    public void CrossEntropy(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> nll, ArrayView<int> hit, int rows, int vocab, float scale, bool grad)
    {
        if (rows > 0) _crossEntropy(Rows(rows), logits, targets, nll, hit, vocab, scale, grad ? 1 : 0);
    }

    public void Dispose() => _partials?.Dispose();
}
