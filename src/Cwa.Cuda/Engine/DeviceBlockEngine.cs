using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Cuda.Gemm;

namespace Cwa.Cuda.Engine;

/// <summary>
/// Layer streaming on a device: only one block's weights and gradient sums (or, while the head runs, lm_head's) are
/// on the device, uploaded from the host's streamed weights as each block comes (in the held format, perturbed
/// values included); the 1-D tensors stay resident. The block operations are <see cref="DeviceLlama"/>'s own, so
/// a streamed device run computes what an in-memory device run computes. Hidden states stay on the host.
/// </summary>
internal sealed class DeviceBlockEngine : IBlockEngine
{
    /// <summary>Vocabulary rows uploaded at a time (lm_head is widened on the host chunk by chunk).</summary>
    private const int UploadRows = 4096;

    private readonly DeviceContext _device;
    private readonly DeviceOps _ops;
    private readonly IDeviceGemm _gemm;
    private readonly StreamedWeights _host;
    private readonly StorageFormat _format;
    private readonly IReadOnlyList<ParameterSpec> _specs;
    private readonly DeviceTensor[] _w, _g;
    private readonly Dictionary<string, DeviceTensor> _blockWeights = new();
    private readonly Dictionary<string, DeviceSums> _blockSums = new();
    private readonly DeviceLlama _model;
    private DeviceTensor? _headWeights;
    private DeviceSums? _headSums, _normSums;
    private int _resident = -1;
    private long _version = -1;
    private bool _headCurrent;

    public DeviceBlockEngine(DeviceContext device, IDeviceGemm gemm, StreamedWeights host, StorageFormat format, EngineOptions options, long logitsChunkElements)
    {
        _device = device;
        _gemm = gemm;
        _host = host;
        _format = format;
        _specs = host.Specs;
        _ops = new DeviceOps(device.Accelerator);
        _w = new DeviceTensor[_specs.Count];
        _g = new DeviceTensor[_specs.Count];
        Host = new LlamaModel<float>(host.Slots, options, host.Embedding, host.Head);
        _model = new DeviceLlama(_ops, gemm, host.Config, _specs, _w, format, options, logitsChunkElements, streamed: true);
        SyncSmallTensors();
    }

    public string Name => _device.IsGpu ? "cuda" : "ilgpu-cpu";
    public string? DeviceDescription => _device.Accelerator.Name;
    public LlamaModel<float> Host { get; }

    public IActivationObserver<float>? Observer
    {
        get => _model.Observer;
        set => _model.Observer = value;
    }

    public void Reserve(Workload workload) => _model.Reserve(_model.ShapeFor(workload.Batch, workload.SeqLen, workload.Gradients));

    /// <summary>
    /// The 1-D tensors (norms, biases) are resident for the whole run; after a perturbation changed any weight, they
    /// are uploaded again and the resident block and lm_head count as stale.
    /// </summary>
    private void SyncSmallTensors()
    {
        if (_version == _host.Version) return;
        for (int t = 0; t < _specs.Count; t++)
        {
            if (_specs[t].Is2D) continue;
            _w[t] ??= new DeviceTensor(_device.Accelerator, _specs[t].NumElements, StorageFormat.F32);
            CudaBackend.Upload(_w[t], _host.Slots[t]);
        }
        _resident = -1;
        _headCurrent = false;
        _version = _host.Version;
    }

    public void LoadBlock(int layer)
    {
        SyncSmallTensors();
        // The host copy must be this block too: scoring passes load host blocks without the engine.
        if (_resident == layer && _host.ResidentBlock == layer) return;
        _host.LoadBlock(layer);
        for (int t = 0; t < _specs.Count; t++)
        {
            var spec = _specs[t];
            if (!spec.Is2D || spec.Block < 0) continue;
            if (spec.Block != layer)
            {
                _w[t] = null!;
                continue;
            }
            if (!_blockWeights.TryGetValue(spec.Component, out var buffer))
                _blockWeights[spec.Component] = buffer = new DeviceTensor(_device.Accelerator, spec.NumElements, _format);
            CudaBackend.Upload(buffer, _host.Slots[t]);
            _w[t] = buffer;
        }
        _resident = layer;
    }

    public void ReleaseBlocks()
    {
        for (int t = 0; t < _specs.Count; t++)
            if (_specs[t].Is2D) _w[t] = null!;
        Array.Clear(_g);
        foreach (var b in _blockWeights.Values) b.Dispose();
        foreach (var s in _blockSums.Values) s.Dispose();
        _blockWeights.Clear();
        _blockSums.Clear();
        _headWeights?.Dispose();
        _headSums?.Dispose();
        _normSums?.Dispose();
        (_headWeights, _headSums, _normSums) = (null, null, null);
        _headCurrent = false;
        _resident = -1;
        _host.ReleaseBlocks();
    }

    /// <summary>The device recomputes each block in the backward: its products are cheap there, host round trips are not.</summary>
    public int KeptPerRow => 0;

    public void ForwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, KeptSlot keep) => _model.StreamForward(layer, ctx.Batch, ctx.Rows, x);

    public void StartBlockSums(int layer, Accumulation mode)
    {
        foreach (int t in _host.BlockMembers(layer))
        {
            var spec = _specs[t];
            if (!_blockSums.TryGetValue(spec.Component, out var sums) || sums.Mode != mode)
            {
                sums?.Dispose();
                _blockSums[spec.Component] = sums = new DeviceSums(_device.Accelerator, spec.NumElements, mode);
            }
            else sums.Clear();
            _g[t] = sums.Target;
        }
    }

    public void BackwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, float[] dx, int batch, double scale, KeptSlot kept)
    {
        _model.StreamBackward(layer, ctx.Batch, ctx.Rows, x, dx, _g);
        foreach (int t in _host.BlockMembers(layer)) _blockSums[_specs[t].Component].EndBatch(_ops, scale, counted: true);
    }

    public IReadOnlyList<(int Tensor, GradientSums Sums)> CompleteBlockSums(int layer)
    {
        var done = _host.BlockMembers(layer).Select(t => (t, _blockSums[_specs[t].Component].Complete(_specs[t].Name))).ToList();
        foreach (var (t, _) in done) _g[t] = null!;
        return done;
    }

    public void StartHeadSums(Accumulation mode, double scale)
    {
        _headSums?.Dispose();
        _normSums?.Dispose();
        _headSums = new DeviceSums(_device.Accelerator, _specs[Host.HeadIndex].NumElements, mode);
        _normSums = new DeviceSums(_device.Accelerator, _specs[Host.FinalNormIndex].NumElements, mode);
    }

    public LossHead<float>.Result Head(LlamaModel<float>.BatchRows ctx, float[] x, float[]? dx, int batch, double scale, Func<LossHead<float>.Result, bool>? live)
    {
        EnsureHead();
        if (dx == null)
        {
            var f = _model.StreamHead(ctx.Batch, ctx.Rows, x, default, default, null, 1.0);
            return new LossHead<float>.Result(f.SumNll, f.Targets, f.Correct);
        }
        var (head, norm) = (_headSums ?? throw new InvalidOperationException("StartHeadSums first"), _normSums!);
        var r = _model.StreamHead(ctx.Batch, ctx.Rows, x, head.Target.Floats, norm.Target.Floats, dx, head.Mode == Accumulation.Sum ? scale : 1.0);
        var result = new LossHead<float>.Result(r.SumNll, r.Targets, r.Correct);
        // Sum mode adds in place: a batch that does not count there stops the pass (only PerBatch runs may skip batches).
        bool counted = live?.Invoke(result) ?? true;
        head.EndBatch(_ops, scale, counted);
        norm.EndBatch(_ops, scale, counted);
        return result;
    }

    public (GradientSums Head, GradientSums FinalNorm) CompleteHeadSums()
    {
        var head = _headSums ?? throw new InvalidOperationException("StartHeadSums first");
        return (head.Complete(_specs[Host.HeadIndex].Name), _normSums!.Complete(_specs[Host.FinalNormIndex].Name));
    }

    /// <summary>lm_head (or the tied embedding) on the device in the held format, widened and uploaded a chunk of rows at a time.</summary>
    private void EnsureHead()
    {
        SyncSmallTensors();
        int head = Host.HeadIndex;
        if (_headCurrent && _headWeights != null) return;
        var spec = _specs[head];
        _headWeights ??= new DeviceTensor(_device.Accelerator, spec.NumElements, _format);
        int cols = spec.Cols;
        var rows = new float[(long)Math.Min(UploadRows, spec.Rows) * cols];
        for (int r = 0; r < spec.Rows; r += UploadRows)
        {
            int count = Math.Min(UploadRows, spec.Rows - r) * cols;
            _host.Fill(head, (long)r * cols, rows.AsSpan(0, count));
            CudaBackend.Upload(_headWeights, rows, (long)r * cols, count);
        }
        _w[head] = _headWeights;
        _headCurrent = true;
    }

    public void Dispose()
    {
        ReleaseBlocks();
        foreach (var t in _w) t?.Dispose();
        _model.Dispose();
        _ops.Dispose();
        _gemm.Dispose();
        _device.Dispose();
    }
}
