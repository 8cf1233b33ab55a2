using System.Numerics.Tensors;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;

namespace Cwa.Core.Engine;

/// <summary>A tensor whose sums over every batch are complete; the arrays are only valid during the callback.</summary>
/// <param name="Weights">the resident weights, or empty for the embedding and lm_head (read them in chunks)</param>
internal readonly record struct CompletedTensor(int Index, float[] Weights, float[]? Gradient, float[]? Fisher);

/// <summary>Loss of every calibration batch of a layer-major pass (NaN for a skipped batch) and which were skipped.</summary>
internal sealed record BatchLosses(LossHead<float>.Result[] Results, IReadOnlyList<string> Skipped);

/// <summary>
/// The layer-major schedule of a model whose weights are streamed (<see cref="StreamedWeights"/>): each block's
/// weights are widened once per sweep and serve every batch before the next block is loaded.
/// Forward: every batch is embedded, then block by block over all batches, each block's input kept in a
/// <see cref="HiddenStore"/>. Head: final norm, lm_head and loss per batch (lm_head read chunk by chunk).
/// Backward: block by block from the last, over all batches: the block's activations are rebuilt from its saved
/// input and the product outputs its forward kept (or, where the engine keeps none or there is no room for them,
/// by recomputing the block), the saved output gradient is propagated through it and only that block's gradients
/// are accumulated; its tensors are then complete and handed to the caller, which scores them and lets them go.
/// The block operations are the batch-major schedule's own (<see cref="LlamaModel{T}"/>), so every batch's
/// gradient is computed by the same code in the same order: streaming changes where sums live, not their values.
/// </summary>
internal sealed class LayerMajorPass
{
    private readonly StreamedWeights _w;
    private readonly IBlockEngine _engine;
    private readonly LlamaModel<float> _model;
    private readonly ModelConfig _c;
    private readonly long _memoryBudget;
    private readonly string? _scratchDir;
    private float[] _x = [], _dx = [];

    public LayerMajorPass(StreamedWeights weights, IBlockEngine engine, long memoryBudget, string? scratchDir)
    {
        _w = weights;
        _engine = engine;
        _c = weights.Config;
        _model = engine.Host;
        _memoryBudget = memoryBudget;
        _scratchDir = scratchDir;
    }

    public IReadOnlyList<ParameterSpec> Specs => _w.Specs;

    /// <summary>
    /// Whether a gradient pass keeps each block's product outputs from the forward sweep for the backward (true) or
    /// recomputes the block there; keeping saves a quarter of the pass's FLOPs. Tests turn it off to compare.
    /// </summary>
    internal bool KeepActivations { get; set; } = true;

    /// <summary>How the last gradient pass's backward got its activations (kept in memory or in a scratch file, or recomputed and why).</summary>
    public string BackwardActivations { get; private set; } = "";

    /// <summary>Seconds per stage of the last <see cref="Gradients"/> or <see cref="ForwardAndLoss"/> pass.</summary>
    public StageClock Clock { get; } = new();

    /// <summary>Allocates one block's activation buffers for the largest batch at once (never regrown batch by batch).</summary>
    public void Reserve(Workload w)
    {
        _engine.Reserve(w);
        Work(w.Batch * w.SeqLen * _c.HiddenSize, gradient: false);
        if (w.Gradients) Work(w.Batch * w.SeqLen * _c.HiddenSize, gradient: true);
    }

    /// <summary>
    /// Returns the memory of released model-sized buffers (the 2 GB vocabulary sums at 8B) to the system before the
    /// next phase allocates its own: without it the collector keeps freed memory committed, and the process holds both.
    /// </summary>
    private static void Reclaim() => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    /// <summary>Steps a progress bar should expect for a pass over this many batches.</summary>
    public int Steps(int batches, bool backward) => batches * (1 + _c.NumLayers * (backward ? 2 : 1) + (backward ? 2 : 1));

    /// <summary>Each held-out batch's loss sums (forward only).</summary>
    public IReadOnlyList<EvalResult> EvaluateEach(IReadOnlyList<Batch> batches, IPhaseProgress? phase) =>
        ForwardAndLoss(batches, null, null, phase).Select(r => new EvalResult(r.SumNll, r.Targets, r.Correct)).ToList();

    /// <summary>
    /// Forward sweep and loss of every batch, with an observer of the linear layers' inputs and outputs;
    /// afterBlock(l) runs once block l has seen every batch (its activation statistics are then complete).
    /// </summary>
    public LossHead<float>.Result[] ForwardAndLoss(IReadOnlyList<Batch> batches, IActivationObserver<float>? observer, Action<int>? afterBlock, IPhaseProgress? phase)
    {
        Clock.Clear();
        var ctxs = batches.Select(_model.Prepare).ToList();
        _engine.Observer = observer;
        try
        {
            using var store = Forward(ctxs, 0, afterBlock, phase);
            var results = new LossHead<float>.Result[ctxs.Count];
            for (int b = 0; b < ctxs.Count; b++)
            {
                int batch = b;
                results[b] = Clock.Time("head", () => _engine.Head(ctxs[batch], Load(store.Slot(_c.NumLayers, batch)), null, batch, 1.0, null));
                phase?.Advance();
            }
            return results;
        }
        finally
        {
            _engine.Observer = null;
        }
    }

    /// <summary>
    /// The gradient of every tensor summed over the batches, tensor by tensor as each is complete (lm_head and the
    /// final norm first, then the blocks from the last, the embedding last).
    /// </summary>
    /// <param name="scale">each batch's weight in the sum (1, or 1 / batches for --grad-reduction mean)</param>
    /// <param name="skipNonFinite">leave out batches whose loss is not finite (a non-finite gradient still stops the pass)</param>
    public BatchLosses Gradients(IReadOnlyList<Batch> batches, Accumulation mode, double scale, bool skipNonFinite,
        Action<CompletedTensor> onTensor, IPhaseProgress? phase)
    {
        Clock.Clear();
        var ctxs = batches.Select(_model.Prepare).ToList();
        if (_c.TieWordEmbeddings && mode == Accumulation.PerBatch)
            throw new InputException("per-batch gradients (fisher, obd, --skip-nonfinite) of a model with tied embeddings need the in-memory mode: use --streaming off");
        using var kept = KeptStore(ctxs);
        using var store = Forward(ctxs, 1, null, phase, kept);
        kept?.Flush();
        // The head phase needs the memory of lm_head's sums and scores more than the last block's weights.
        _engine.ReleaseBlocks();
        Reclaim();
        // Each phase is its own method, so the 2 GB sums of a vocabulary tensor are unreachable once its phase returns.
        var (losses, live, tiedSums) = HeadPhase(ctxs, store, mode, scale, skipNonFinite, onTensor, phase);
        Reclaim();
        BackwardSweep(ctxs, store, kept, live, mode, scale, onTensor, phase);
        if (kept != null)
        {
            // Parts of forward_blocks and backward_blocks, shown apart because a scratch file can make them slow.
            Clock.Add("kept_writes", kept.WriteSeconds);
            Clock.Add("kept_reads", kept.ReadSeconds);
            kept.Dispose();
        }
        Reclaim();
        EmbeddingPhase(ctxs, store, live, mode, scale, tiedSums, onTensor, phase);
        return losses;
    }

    private int GradientLevel => _c.NumLayers + 1;

    /// <summary>
    /// Final norm, lm_head and loss of every batch, and the gradient down to the last block's output (saved per
    /// batch). lm_head is completed here; a tied embedding's sums are returned to go on accumulating.
    /// </summary>
    private (BatchLosses Losses, bool[] Live, GradientSums? TiedSums) HeadPhase(List<LlamaModel<float>.BatchRows> ctxs, HiddenStore store, Accumulation mode,
        double scale, bool skipNonFinite, Action<CompletedTensor> onTensor, IPhaseProgress? phase)
    {
        var results = new LossHead<float>.Result[ctxs.Count];
        var skipped = new List<string>();
        var live = new bool[ctxs.Count];
        _engine.StartHeadSums(mode, scale);
        for (int b = 0; b < ctxs.Count; b++)
        {
            // The final norm's backward adds into dx (as every residual does): it starts from zero.
            var dx = Work(store.Slot(GradientLevel, b).Length, gradient: true);
            Array.Clear(dx);
            int batch = b;
            results[b] = Clock.Time("head", () => _engine.Head(ctxs[batch], Load(store.Slot(_c.NumLayers, batch)), dx, batch, scale, r => live[batch] = Finite(r, batch, skipNonFinite, skipped)));
            if (live[b]) Save(dx, store.Slot(GradientLevel, b));
            phase?.Advance();
        }
        if (live.All(x => !x))
            throw new CwaException($"every calibration batch had a non-finite loss ({skipped[0]})");
        var (headSums, normSums) = Clock.Time("head", _engine.CompleteHeadSums);
        _engine.ReleaseBlocks();
        onTensor(new CompletedTensor(_model.FinalNormIndex, _w.Slots[_model.FinalNormIndex], normSums.Total, normSums.Squares));
        if (_c.TieWordEmbeddings) return (new BatchLosses(results, skipped), live, headSums);
        onTensor(new CompletedTensor(_model.HeadIndex, [], headSums.Total, headSums.Squares));
        return (new BatchLosses(results, skipped), live, null);
    }

    /// <summary>Blocks, last first: recompute from the saved input, backpropagate the saved gradient, complete the block.</summary>
    private void BackwardSweep(List<LlamaModel<float>.BatchRows> ctxs, HiddenStore store, KeptActivations? kept, bool[] live, Accumulation mode, double scale,
        Action<CompletedTensor> onTensor, IPhaseProgress? phase)
    {
        for (int l = _c.NumLayers - 1; l >= 0; l--)
        {
            int layer = l;
            Clock.Time("load_weights", () => _engine.LoadBlock(layer));
            _w.Prefetch(layer - 1);
            kept?.Prefetch(layer - 1);
            Clock.Time("backward_blocks", () => _engine.StartBlockSums(layer, mode));
            for (int b = 0; b < ctxs.Count; b++)
            {
                if (!live[b]) continue;
                int batch = b;
                Clock.Time("backward_blocks", () =>
                {
                    var x = Load(store.Slot(layer, batch));
                    var dx = Load(store.Slot(GradientLevel, batch), gradient: true);
                    _engine.BackwardBlock(layer, ctxs[batch], x, dx, batch, scale, kept?.Slot(layer, batch) ?? default);
                    Save(dx, store.Slot(GradientLevel, batch));
                });
                phase?.Advance();
            }
            foreach (var (t, sums) in Clock.Time("backward_blocks", () => _engine.CompleteBlockSums(layer)))
                onTensor(new CompletedTensor(t, _w.Slots[t], sums.Total, sums.Squares));
        }
        _engine.ReleaseBlocks();
    }

    /// <summary>Embedding: each batch's rows of the gradient flowing out of block 0 go to their tokens' rows.</summary>
    private void EmbeddingPhase(List<LlamaModel<float>.BatchRows> ctxs, HiddenStore store, bool[] live, Accumulation mode, double scale, GradientSums? tiedSums,
        Action<CompletedTensor> onTensor, IPhaseProgress? phase)
    {
        var embedSums = tiedSums ?? new GradientSums((long)_c.VocabSize * _c.HiddenSize, mode);
        for (int b = 0; b < ctxs.Count; b++)
        {
            if (!live[b]) continue;
            int batch = b;
            Clock.Time("embedding", () =>
            {
                var dx = Load(store.Slot(GradientLevel, batch), gradient: true);
                if (mode == Accumulation.Sum) _model.EmbedBackward(ctxs[batch], dx, embedSums.Total);
                else PerBatchEmbedding(ctxs[batch], dx, embedSums, scale, batch);
            });
            phase?.Advance();
        }
        onTensor(new CompletedTensor(_model.EmbedIndex, [], embedSums.Total, embedSums.Squares));
    }

    private static bool Finite(LossHead<float>.Result r, int batch, bool skipNonFinite, List<string> skipped)
    {
        double loss = r.Targets == 0 ? 0 : r.SumNll / r.Targets;
        if (double.IsFinite(loss)) return true;
        if (!skipNonFinite)
            throw new CwaException($"calibration batch {batch} produced a non-finite loss ({loss}); check the model weights and data (or pass --skip-nonfinite)");
        skipped.Add($"batch {batch}: loss {loss}");
        return false;
    }

    /// <summary>The embedding's gradient of one batch, accumulated per token in row order, then added to the sums.</summary>
    private void PerBatchEmbedding(LlamaModel<float>.BatchRows ctx, float[] dx, GradientSums sums, double scale, int batch)
    {
        int d = _c.HiddenSize;
        var slot = new Dictionary<int, int>();
        var rows = new float[ctx.Count * d];
        for (int r = 0; r < ctx.Count; r++)
        {
            int tok = ctx.Rows.Tokens[r];
            if (!slot.TryGetValue(tok, out int s)) slot[tok] = s = slot.Count;
            var dst = rows.AsSpan(s * d, d);
            TensorPrimitives.Add(dst, dx.AsSpan(r * d, d), dst);
        }
        foreach (var (tok, s) in slot)
            sums.AddBatch((long)tok * d, rows, s * d, d, scale, batch, Specs[_model.EmbedIndex].Name);
    }

    /// <summary>
    /// Where a gradient pass keeps every block's product outputs (<see cref="IBlockEngine.KeptPerRow"/> per row and
    /// block): in memory or in a scratch file, as <see cref="MemoryEstimate.KeepsInMemory"/> decides. Null, and the
    /// backward recomputes each block, where the engine keeps nothing or there is no room.
    /// </summary>
    private KeptActivations? KeptStore(List<LlamaModel<float>.BatchRows> ctxs)
    {
        int perRow = _engine.KeptPerRow, L = _c.NumLayers;
        var rowsPerBatch = ctxs.Select(c => c.Count).ToList();
        long rows = rowsPerBatch.Sum(r => (long)r), bytes = rows * perRow * L * sizeof(float);
        if (perRow == 0 || !KeepActivations)
        {
            BackwardActivations = perRow == 0 ? "recomputed (this engine keeps none)" : "recomputed (keeping is turned off)";
            return null;
        }
        if (MemoryEstimate.KeepsInMemory(bytes, MemoryEstimate.HiddenBytes(_c, rows, needGradients: true), _memoryBudget))
        {
            BackwardActivations = $"kept in memory ({MemoryEstimate.Format(bytes)})";
            return new KeptActivations(rowsPerBatch, perRow, L, null);
        }
        if (_scratchDir == null)
        {
            BackwardActivations = $"recomputed (kept products would need {MemoryEstimate.Format(bytes)}, beyond the memory budget, and there is no scratch folder)";
            return null;
        }
        long free = new DriveInfo(Path.GetFullPath(_scratchDir)).AvailableFreeSpace;
        if (free < bytes + (1L << 30))
        {
            BackwardActivations = $"recomputed (kept products would need {MemoryEstimate.Format(bytes)} of scratch space; {_scratchDir} has {MemoryEstimate.Format(free)} free)";
            return null;
        }
        string path = Path.Combine(_scratchDir, $".cwa-kept-{Guid.NewGuid():N}.scratch");
        try
        {
            var store = new KeptActivations(rowsPerBatch, perRow, L, path);
            BackwardActivations = $"kept in a scratch file ({MemoryEstimate.Format(bytes)})";
            return store;
        }
        catch (CwaException e)
        {
            BackwardActivations = $"recomputed ({e.Message})";
            return null;
        }
    }

    private HiddenStore Forward(List<LlamaModel<float>.BatchRows> ctxs, int extraLevels, Action<int>? afterBlock, IPhaseProgress? phase, KeptActivations? kept = null)
    {
        int L = _c.NumLayers, d = _c.HiddenSize;
        string? scratch = _scratchDir == null ? null : Path.Combine(_scratchDir, $".cwa-hidden-{Guid.NewGuid():N}.scratch");
        var store = new HiddenStore(ctxs.Select(c => c.Count).ToList(), d, L + 1 + extraLevels, _memoryBudget, scratch);
        try
        {
            for (int b = 0; b < ctxs.Count; b++)
            {
                int batch = b;
                Clock.Time("embedding", () => _model.Embed(ctxs[batch]).AsSpan(0, ctxs[batch].Count * d).CopyTo(store.Slot(0, batch)));
                phase?.Advance();
            }
            for (int l = 0; l < L; l++)
            {
                int layer = l;
                Clock.Time("load_weights", () => _engine.LoadBlock(layer));
                // The next block's bytes (after the last block, lm_head's) come from disk while this one computes.
                if (layer + 1 < L) _w.Prefetch(layer + 1);
                else _w.PrefetchHead();
                for (int b = 0; b < ctxs.Count; b++)
                {
                    int batch = b;
                    Clock.Time("forward_blocks", () =>
                    {
                        var x = Load(store.Slot(layer, batch));
                        _engine.ForwardBlock(layer, ctxs[batch], x, kept?.Slot(layer, batch) ?? default);
                        Save(x, store.Slot(layer + 1, batch));
                    });
                    phase?.Advance();
                }
                afterBlock?.Invoke(l);
            }
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>A work array whose first values are a copy of a slot (the engine's block operations take arrays).</summary>
    private float[] Load(ReadOnlySpan<float> slot, bool gradient = false)
    {
        var x = Work(slot.Length, gradient);
        slot.CopyTo(x);
        return x;
    }

    /// <summary>One array for hidden states and one for the gradient flowing back, grown to the largest batch.</summary>
    private float[] Work(int length, bool gradient)
    {
        ref var a = ref gradient ? ref _dx : ref _x;
        if (a.Length < length) a = new float[length];
        return a;
    }

    private static void Save(float[] work, Span<float> slot) => work.AsSpan(0, slot.Length).CopyTo(slot);
}
