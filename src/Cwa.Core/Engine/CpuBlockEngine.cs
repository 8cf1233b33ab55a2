using Cwa.Core.Models;
using Cwa.Core.Pipeline;

namespace Cwa.Core.Engine;

/// <summary>
/// The CPU's block engine: the batch-major model's own block operations (<see cref="LlamaModel{T}"/>) on the block
/// widened into <see cref="StreamedWeights.Slots"/>, accumulating straight into host sums.
/// </summary>
internal sealed class CpuBlockEngine : IBlockEngine
{
    private readonly StreamedWeights _w;
    private readonly ModelWeights<float> _grads;
    private readonly Dictionary<string, GradientSums> _blockSums = new();
    private readonly int _finalNorm;
    private GradientSums? _headSums, _normSums;
    private IHeadGradient<float>? _headGradient;

    public CpuBlockEngine(StreamedWeights weights, EngineOptions options)
    {
        _w = weights;
        Host = new LlamaModel<float>(weights.Slots, options, weights.Embedding, weights.Head) { MappedWeights = weights.Mapped };
        _grads = ModelWeights<float>.Unbound(weights.Config);
        _finalNorm = Host.FinalNormIndex;
    }

    public string Name => "cpu";
    public string? DeviceDescription => null;
    public LlamaModel<float> Host { get; }

    public void Reserve(Workload workload) => Host.Reserve(workload.Batch, workload.SeqLen, backward: false);

    public void LoadBlock(int layer) => _w.LoadBlock(layer, mapped: true);

    /// <summary>Also drops the block sums: at 8B one block's Fisher sums are 2.6 GB that the embedding phase must not hold.</summary>
    public void ReleaseBlocks()
    {
        _w.ReleaseBlocks();
        _blockSums.Clear();
        _headSums = _normSums = null;
        _headGradient = null;
    }

    public IActivationObserver<float>? Observer
    {
        get => Host.Observer;
        set => Host.Observer = value;
    }

    public int KeptPerRow => LayerCache<float>.KeptPerRow(_w.Config);

    public void ForwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, KeptSlot keep)
    {
        var cache = Host.Caches(ctx.Batch, 1)[0];
        Host.ForwardBlock(layer, x, cache, ctx, Host.Observer);
        if (!keep.IsEmpty) cache.SaveKept(keep, ctx.Count);
    }

    public void StartBlockSums(int layer, Accumulation mode)
    {
        foreach (int t in _w.BlockMembers(layer))
        {
            var spec = _w.Specs[t];
            if (!_blockSums.TryGetValue(spec.Component, out var sums) || sums.Mode != mode)
                _blockSums[spec.Component] = sums = new GradientSums(spec.NumElements, mode);
            // A weight matrix's first batch writes its sums whole (Sum: a product with beta 0; PerBatch: a fold).
            sums.Clear(overwritten: spec.Is2D);
            // Folded weight matrices get their scratch per batch (BackwardBlock), and most batches need none.
            _grads.Bind(t, Folds(sums, spec) ? [] : sums.Target);
        }
    }

    public void BackwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, float[] dx, int batch, double scale, KeptSlot kept)
    {
        var members = _w.BlockMembers(layer).ToList();
        var folds = Host.GradientFolds ??= new GemmFold?[_w.Specs.Count];
        var writes = Host.GradientWrites ??= new bool[_w.Specs.Count];
        foreach (int t in members)
        {
            var (spec, sums) = (_w.Specs[t], _blockSums[_w.Specs[t].Component]);
            writes[t] = sums.Mode == Accumulation.Sum && sums.HoldsNoBatch;
            if (Folds(sums, spec))
            {
                folds[t] = sums.StartFoldedBatch(scale);
                // Only a product that writes C needs the batch buffer (0.9 GB per 8B block): batches of more than
                // KCSingle rows. The buffer, once made, stays for the run.
                _grads.Bind(t, Sgemm.FoldWritesC(spec.Rows, spec.Cols, ctx.Count) ? sums.Target : []);
            }
            else sums.StartBatch();
        }
        var cache = Host.Caches(ctx.Batch, 1)[0];
        if (kept.IsEmpty) Host.ForwardBlock(layer, x, cache, ctx, null);
        else
        {
            cache.LoadKept(kept, ctx.Count);
            Host.RestoreBlock(layer, x, cache, ctx);
        }
        try { Host.BackwardBlock(layer, cache, dx, _grads, ctx); }
        finally
        {
            foreach (int t in members) (folds[t], writes[t]) = (null, false);
        }
        foreach (int t in members) _blockSums[_w.Specs[t].Component].EndBatch(scale, batch, _w.Specs[t].Name);
        PeakBatchBufferBytes = Math.Max(PeakBatchBufferBytes, _blockSums.Values.Where(s => s.HoldsBatchBuffer).Sum(s => s.Length * 4));
    }

    /// <summary>The most bytes the block sums' batch buffers held at once (folded weight matrices make none for batches of one SGEMM step).</summary>
    internal long PeakBatchBufferBytes { get; private set; }

    /// <summary>Weight matrices' per-batch gradients are folded into the sums by the products that compute them.</summary>
    private static bool Folds(GradientSums sums, ParameterSpec spec) => sums.Mode == Accumulation.PerBatch && spec.Is2D;

    public IReadOnlyList<(int Tensor, GradientSums Sums)> CompleteBlockSums(int layer)
    {
        var done = _w.BlockMembers(layer).Select(t => (t, _blockSums[_w.Specs[t].Component])).ToList();
        foreach (var (t, _) in done) _grads.Bind(t, []);
        return done;
    }

    public void StartHeadSums(Accumulation mode, double scale)
    {
        int d = _w.Config.HiddenSize, head = Host.HeadIndex;
        _headSums = new GradientSums((long)_w.Config.VocabSize * d, mode);
        _normSums = new GradientSums(d, mode);
        _headGradient = mode == Accumulation.Sum ? new ResidentRows<float>(_headSums.Total, d) : new PerBatchHeadGradient(_headSums, d, scale, _w.Specs[head].Name);
    }

    public LossHead<float>.Result Head(LlamaModel<float>.BatchRows ctx, float[] x, float[]? dx, int batch, double scale, Func<LossHead<float>.Result, bool>? live)
    {
        if (dx == null) return Host.Head(ctx, x, null, null, null, 1.0);
        var norm = _normSums ?? throw new InvalidOperationException("StartHeadSums first");
        norm.StartBatch();
        if (_headGradient is PerBatchHeadGradient perBatch) perBatch.Batch = batch;
        bool counted = false;
        var result = Host.Head(ctx, x, _headGradient, norm.Target, dx, norm.Mode == Accumulation.Sum ? scale : 1.0, r => counted = live?.Invoke(r) ?? true);
        if (counted)
        {
            norm.EndBatch(scale, batch, _w.Specs[_finalNorm].Name);
            (_headGradient as PerBatchHeadGradient)?.EndBatch();
        }
        return result;
    }

    public (GradientSums Head, GradientSums FinalNorm) CompleteHeadSums() =>
        (_headSums ?? throw new InvalidOperationException("StartHeadSums first"), _normSums!);

    public void Dispose() { }
}
