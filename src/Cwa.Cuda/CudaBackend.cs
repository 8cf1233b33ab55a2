using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Cuda.Engine;
using Cwa.Cuda.Gemm;
using Cwa.Cuda.Kernels;
using Cwa.Core.Sensitivity;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda;

/// <summary>
/// The device backend: weights resident on the accelerator in their held format (2-D tensors bf16/fp16/fp32,
/// 1-D tensors fp32), fp32 gradient buffers accumulated across batches on the device, the forward and backward
/// of <see cref="DeviceLlama"/>. Only per-tensor data crosses to the host, one tensor at a time.
/// </summary>
public sealed class CudaBackend : IBackend, IDeviceScoring
{
    /// <summary>Logits chunk on the device (elements): 1 GiB of fp32, about 2,000 rows at Llama 3's vocabulary.</summary>
    public const long DefaultLogitsChunk = 1L << 28;
    private const int TransferChunk = 1 << 24;

    private readonly DeviceContext _device;
    private readonly DeviceOps _ops;
    private readonly IDeviceGemm _gemm;
    private readonly DeviceTensor[] _w;
    private DeviceTensor[]? _g;
    private readonly DeviceLlama _model;
    private DeviceScorer? _scorer;

    /// <summary>A backend holding these fp32 values (rounded to the format for 2-D tensors).</summary>
    public CudaBackend(DeviceContext device, IDeviceGemm gemm, ModelWeights<float> weights, StorageFormat format, EngineOptions? options = null,
        long logitsChunkElements = DefaultLogitsChunk)
        : this(device, gemm, weights.Config, weights.Specs, format, options, logitsChunkElements, (i, t) => Upload(t, weights[i]))
    {
    }

    private CudaBackend(DeviceContext device, IDeviceGemm gemm, ModelConfig config, IReadOnlyList<ParameterSpec> specs, StorageFormat format,
        EngineOptions? options, long logitsChunkElements, Action<int, DeviceTensor> fill)
    {
        _device = device;
        _gemm = gemm;
        Config = config;
        Specs = specs;
        Format = format;
        _ops = new DeviceOps(device.Accelerator);
        _w = new DeviceTensor[Specs.Count];
        try
        {
            for (int i = 0; i < Specs.Count; i++)
            {
                _w[i] = new DeviceTensor(device.Accelerator, Specs[i].NumElements, Specs[i].Is2D ? format : StorageFormat.F32);
                fill(i, _w[i]);
            }
        }
        catch
        {
            foreach (var t in _w) t?.Dispose();
            _ops.Dispose();
            throw;
        }
        _model = new DeviceLlama(_ops, gemm, Config, Specs, _w, format, options ?? new EngineOptions(), logitsChunkElements);
    }

    /// <summary>
    /// Loads the weights from the checkpoint straight onto the device, holding them as `held`: a tensor already
    /// stored in that half format is copied as is (no fp32 copy on the host at all), anything else is widened,
    /// rounded to `held` like the CPU path rounds it, and converted. Non-finite values are refused, naming the shard.
    /// </summary>
    public static CudaBackend FromCheckpoint(DeviceContext device, IDeviceGemm gemm, CheckpointFolder ckpt, DType held, EngineOptions? options,
        long logitsChunkElements, Action<string>? onTensor = null)
    {
        var specs = LlamaLayout.Parameters(ckpt.Config);
        var format = StorageFormats.Of(held);
        return new CudaBackend(device, gemm, ckpt.Config, specs, format, options, logitsChunkElements, (i, t) =>
        {
            var spec = specs[i];
            onTensor?.Invoke(spec.Name);
            var stored = ckpt.StoredType(spec.Name);
            long bad;
            if (t.Format != StorageFormat.F32 && stored == held)
            {
                var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(ckpt.RawBytes(spec.Name));
                bad = HalfBits.FirstNonFinite(bits, t.Format);
                if (bad < 0) UploadBits(t, bits);
            }
            else
            {
                var values = new float[spec.NumElements];
                ckpt.Read(spec.Name, values);
                if (stored != held) DTypeConversion.RoundTo(values, held);
                bad = Core.NonFinite.FirstIndex(values, 0);
                if (bad < 0) Upload(t, values);
            }
            if (bad >= 0) throw new Core.InputException($"{ckpt.ShardOf(spec.Name)}: tensor {spec.Name} holds a non-finite value at flat index {bad}");
        });
    }

    public string Name => _device.IsGpu ? "cuda" : "ilgpu-cpu";
    public string DeviceDescription => _device.Accelerator.Name;
    public string GemmName => _gemm.Name;
    public ModelConfig Config { get; }
    public IReadOnlyList<ParameterSpec> Specs { get; }
    public StorageFormat Format { get; }

    public IActivationObserver<float>? Observer
    {
        get => _model.Observer;
        set => _model.Observer = value;
    }

    /// <summary>Gradient buffers, allocated on the first backward pass (forward-only metrics never pay for them).</summary>
    private DeviceTensor[] Gradients
    {
        get
        {
            if (_g != null) return _g;
            _g = Specs.Select(s => new DeviceTensor(_device.Accelerator, s.NumElements, StorageFormat.F32)).ToArray();
            foreach (var t in _g) t.Floats.MemSetToZero();
            return _g;
        }
    }

    /// <summary>Allocates what batches up to this shape need now, so a device that is too small fails before the first batch.</summary>
    public void Reserve(Workload workload)
    {
        if (workload.Gradients) _ = Gradients;
        _model.Reserve(_model.ShapeFor(workload.Batch, workload.SeqLen, workload.Gradients));
    }

    public double ForwardLoss(Batch batch)
    {
        var r = _model.Run(batch, null, 1.0);
        return r.Targets == 0 ? 0 : r.SumNll / r.Targets;
    }

    public double ForwardBackward(Batch batch, double scale)
    {
        var r = _model.Run(batch, Gradients, scale);
        // Backward kernels are still queued when the loss is known: wait, so timings and errors belong to this batch.
        _device.Accelerator.Synchronize();
        return r.Targets == 0 ? 0 : r.SumNll / r.Targets;
    }

    public EvalResult Evaluate(Batch batch)
    {
        var r = _model.Run(batch, null, 1.0);
        return new EvalResult(r.SumNll, r.Targets, r.Correct);
    }

    public void ClearGradients()
    {
        if (_g == null) return;
        foreach (var t in _g) t.Floats.MemSetToZero();
    }

    public void ReadGradient(int tensorIndex, Span<float> destination) => Gradients[tensorIndex].Floats.CopyToCPU(destination);

    public void WriteGradient(int tensorIndex, ReadOnlySpan<float> source) => Gradients[tensorIndex].Floats.CopyFromCPU(source);

    public void ReadWeight(int tensorIndex, Span<float> destination)
    {
        var t = _w[tensorIndex];
        if (t.Format == StorageFormat.F32)
        {
            t.Floats.CopyToCPU(destination);
            return;
        }
        var bits = new ushort[Math.Min(TransferChunk, t.Length)];
        for (long o = 0; o < t.Length; o += bits.Length)
        {
            int len = (int)Math.Min(bits.Length, t.Length - o);
            t.Halves.SubView(o, len).CopyToCPU(bits.AsSpan(0, len));
            var dst = destination.Slice((int)o, len);
            if (t.Format == StorageFormat.Bf16) DTypeConversion.Bf16ToFloat(bits.AsSpan(0, len), dst);
            else for (int i = 0; i < len; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(bits[i]);
        }
    }

    public bool CanScore(SensitivityMetric metric) => metric is SensitivityMetric.GradXWeight or SensitivityMetric.GradSquared;

    public ScoreSummary Score(int tensorIndex, SensitivityMetric metric, int maxK, RadixQuantiles? modelWide = null) =>
        Scorer.Score(Specs[tensorIndex], tensorIndex, Gradients[tensorIndex], _w[tensorIndex], Kernel(metric), maxK, modelWide);

    public void Refine(int tensorIndex, SensitivityMetric metric, RadixRefinement refinement) =>
        Scorer.Refine(Specs[tensorIndex], Gradients[tensorIndex], _w[tensorIndex], Kernel(metric), refinement);

    private static int Kernel(SensitivityMetric metric) => metric == SensitivityMetric.GradSquared ? ScoreKernels.GradSquared : ScoreKernels.GradXWeight;

    public void ReadGradientAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values) => _ops.Gather(Gradients[tensorIndex], flatIndices, values);

    public void ReadWeightsAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values) => _ops.Gather(_w[tensorIndex], flatIndices, values);

    private DeviceScorer Scorer => _scorer ??= new DeviceScorer(_device.Accelerator, _ops.RowGroupSize);

    /// <summary>Values are rounded to the tensor's held format, as a bf16/fp16 deployment would store them.</summary>
    public void WriteWeights(int tensorIndex, ReadOnlySpan<long> flatIndices, ReadOnlySpan<float> values) => _ops.Scatter(_w[tensorIndex], flatIndices, values);

    /// <summary>Converts to the held format on all cores (a model-sized loop) and copies in large chunks.</summary>
    /// <summary>values[0, count) into elements [offset, offset + count) of t (count -1: all of values).</summary>
    internal static void Upload(DeviceTensor t, float[] values, long offset = 0, int count = -1)
    {
        if (count < 0) count = values.Length;
        if (t.Format == StorageFormat.F32)
        {
            t.Floats.SubView(offset, count).CopyFromCPU(values.AsSpan(0, count));
            return;
        }
        var bits = new ushort[Math.Min(TransferChunk, count)];
        for (int o = 0; o < count; o += bits.Length)
        {
            int len = Math.Min(bits.Length, count - o), part = 1 << 16, start = o;
            bool bf16 = t.Format == StorageFormat.Bf16;
            Parallel.For(0, (len + part - 1) / part, p =>
            {
                for (int i = p * part; i < Math.Min(len, (p + 1) * part); i++)
                    bits[i] = bf16 ? DTypeConversion.FloatToBf16(values[start + i]) : BitConverter.HalfToUInt16Bits((System.Half)values[start + i]);
            });
            t.Halves.SubView(offset + o, len).CopyFromCPU(bits.AsSpan(0, len));
        }
    }

    private static void UploadBits(DeviceTensor t, ReadOnlySpan<ushort> bits)
    {
        for (int o = 0; o < bits.Length; o += TransferChunk)
        {
            int len = Math.Min(TransferChunk, bits.Length - o);
            t.Halves.SubView(o, len).CopyFromCPU(bits.Slice(o, len));
        }
    }

    public void Dispose()
    {
        _model.Dispose();
        _scorer?.Dispose();
        _ops.Dispose();
        foreach (var t in _g ?? []) t.Dispose();
        foreach (var t in _w) t.Dispose();
        _gemm.Dispose();
        _device.Dispose();
    }
}
