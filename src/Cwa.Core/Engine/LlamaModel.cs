using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>
/// Llama-family decoder (Llama 2/3/3.1, Mistral, Qwen2 biases) with a hand-written backward pass.
/// Generic over float (production) and double (finite-difference gradient checks).
/// Loss = mean next-token cross-entropy over the batch's targets; ForwardBackward adds scale * dLoss/dW to the
/// given gradient buffers for every parameter.
/// </summary>
public sealed class LlamaModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly ModelWeights<T> _w;
    private readonly ModelConfig _c;
    private readonly EngineOptions _options;
    private readonly int _threads;
    private readonly LayerParams[] _layers;
    private readonly int _embed, _finalNorm, _head;
    private readonly Attention<T> _attention;
    private readonly LossHead<T> _lossHead;
    private readonly IMatrixRows<T> _embedRows, _headRows;
    private Rope<T>? _rope;
    // Work buffers sized for the largest batch seen so far and reused by every smaller one: batches differ in padded
    // length, and reallocating ~100 MB of large arrays per batch cost more than some GEMMs and let the garbage
    // collector hold several batches' worth. Every element used is written before it is read.
    private (long Rows, long Probs) _capacity;
    private LayerCache<T>[] _caches = [];
    private BlockScratch? _scratch;
    // Per-batch hidden-sized arrays, likewise grown to the largest batch and reused (only the first rows x hidden are used).
    private T[] _x = [], _dx = [], _xn = [], _dxn = [], _rf = [];

    private static T[] Grow(ref T[] array, int length) => array.Length >= length ? array : array = new T[length];

    /// <param name="embedding">where embedding rows are read (default: the resident tensor)</param>
    /// <param name="head">where lm_head rows are read (default: the resident tensor, or the embedding when tied)</param>
    internal LlamaModel(ModelWeights<T> weights, EngineOptions? options, IMatrixRows<T>? embedding, IMatrixRows<T>? head)
    {
        _w = weights;
        _c = weights.Config;
        _options = options ?? new EngineOptions();
        _threads = _options.EffectiveThreads;
        _layers = LayerParams.Resolve(weights.Specs, _c.NumLayers);
        _embed = weights.IndexOf("model.embed_tokens.weight");
        _finalNorm = weights.IndexOf("model.norm.weight");
        _head = _c.TieWordEmbeddings ? _embed : weights.IndexOf("lm_head.weight");
        if (_c.NumHeads % _c.NumKvHeads != 0)
            throw new InputException($"num_attention_heads {_c.NumHeads} is not a multiple of num_key_value_heads {_c.NumKvHeads}");
        _attention = new Attention<T>(_c.NumHeads, _c.NumKvHeads, _c.HeadDim, _threads);
        _lossHead = new LossHead<T>(_threads);
        _embedRows = embedding ?? new ResidentRows<T>(weights[_embed], _c.HiddenSize);
        _headRows = head ?? (_c.TieWordEmbeddings ? _embedRows : new ResidentRows<T>(weights[_head], _c.HiddenSize));
    }

    public LlamaModel(ModelWeights<T> weights, EngineOptions? options = null) : this(weights, options, null, null) { }

    public ModelWeights<T> Weights => _w;
    public IActivationObserver<T>? Observer { get; set; }
    /// <summary>
    /// Per tensor index, where the block backward folds a weight matrix's gradient as it computes it instead of adding
    /// it to the gradient buffer (float only; the layer-major pass's per-batch sums, <see cref="GemmFold"/>).
    /// </summary>
    internal GemmFold?[]? GradientFolds { get; set; }
    /// <summary>
    /// Per tensor index, whether the block backward writes a weight matrix's gradient buffer (beta 0) instead of adding
    /// to it: the buffer holds no batch yet (the layer-major pass's sums, <see cref="GradientSums.HoldsNoBatch"/>).
    /// </summary>
    internal bool[]? GradientWrites { get; set; }
    /// <summary>Per tensor index, weight matrices the products read as mapped bf16 (float only; <see cref="StreamedWeights.Mapped"/>).</summary>
    internal Bf16Matrix?[]? MappedWeights { get; set; }
    internal int HeadIndex => _head;
    internal int EmbedIndex => _embed;
    internal int FinalNormIndex => _finalNorm;

    public double ForwardLoss(Batch batch)
    {
        var r = Run(batch, null, 1.0);
        return r.Targets == 0 ? 0 : r.SumNll / r.Targets;
    }

    public double ForwardBackward(Batch batch, ModelWeights<T> grads, double scale = 1.0)
    {
        var r = Run(batch, grads, scale);
        return r.Targets == 0 ? 0 : r.SumNll / r.Targets;
    }

    public EvalResult Evaluate(Batch batch)
    {
        var r = Run(batch, null, 1.0);
        return new EvalResult(r.SumNll, r.Targets, r.Correct);
    }

    /// <summary>
    /// The batch-major schedule (every block resident): forward through all blocks keeping their activations (or
    /// only their inputs with --recompute), the loss head, then backward through all blocks.
    /// </summary>
    private LossHead<T>.Result Run(Batch batch, ModelWeights<T>? grads, double scale)
    {
        var ctx = Prepare(batch);
        bool backward = grads != null;
        bool keepAll = backward && !_options.Recompute;
        var caches = Caches(batch, keepAll ? _c.NumLayers : 1);
        var x = Embed(ctx);
        int size = ctx.Count * _c.HiddenSize;
        var savedInputs = backward && _options.Recompute ? new T[_c.NumLayers][] : null;
        for (int l = 0; l < _c.NumLayers; l++)
        {
            if (savedInputs != null) savedInputs[l] = x.AsSpan(0, size).ToArray();
            ForwardBlock(l, x, caches[keepAll ? l : 0], ctx, Observer);
        }
        if (!backward) return Head(ctx, x, null, null, null, scale);
        var dx = Grow(ref _dx, size);
        Array.Clear(dx, 0, size);
        var result = Head(ctx, x, new ResidentRows<T>(grads![_head], _c.HiddenSize), grads[_finalNorm], dx, scale);
        for (int l = _c.NumLayers - 1; l >= 0; l--)
        {
            var cache = caches[keepAll ? l : 0];
            if (savedInputs != null)
                ForwardBlock(l, (T[])savedInputs[l].Clone(), cache, ctx, null);
            BackwardBlock(l, cache, dx, grads, ctx);
        }
        EmbedBackward(ctx, dx, grads[_embed]);
        return result;
    }

    /// <summary>What every block operation of one batch shares: its real rows packed, positions, targets.</summary>
    internal sealed class BatchRows
    {
        public required Batch Batch { get; init; }
        public required PackedRows Rows { get; init; }
        public required bool[] Real { get; init; }
        public required int[] TargetRows { get; init; }
        public required int[] Targets { get; init; }
        public int Count => Rows.Count;
    }

    internal BatchRows Prepare(Batch batch)
    {
        if (_rope == null || _rope.MaxPositions < batch.SeqLen) _rope = new Rope<T>(_c, Math.Max(batch.SeqLen, 16));
        // Only real tokens are computed: sequence b's rows sit packed at rows.Start[b] .., so padding costs nothing
        // (with right padding and a causal mask no real token depends on a padding row).
        var rows = PackedRows.Of(batch);
        var real = new bool[rows.Count];
        Array.Fill(real, true);
        var (targetRows, targets) = rows.Targets(batch);
        return new BatchRows { Batch = batch, Rows = rows, Real = real, TargetRows = targetRows, Targets = targets };
    }

    /// <summary>Allocates the work buffers for batches up to this shape at once, so they are never reallocated as shapes grow.</summary>
    internal void Reserve(int batch, int seqLen, bool backward) =>
        Caches(new Batch(batch, seqLen, [], new int[batch]), backward && !_options.Recompute ? _c.NumLayers : 1);

    /// <summary>Drops the work buffers (the next pass allocates what it needs).</summary>
    internal void ReleaseWorkspace()
    {
        _caches = [];
        _scratch = null;
        _capacity = default;
        _x = _dx = _xn = _dxn = _rf = [];
    }

    /// <summary>Activation buffers for at least `count` blocks, large enough for this batch (grown, never shrunk).</summary>
    internal LayerCache<T>[] Caches(Batch batch, int count)
    {
        long rows = (long)batch.BatchSize * batch.SeqLen, probs = rows * _c.NumHeads * batch.SeqLen;
        if (rows > _capacity.Rows || probs > _capacity.Probs)
        {
            _capacity = (Math.Max(rows, _capacity.Rows), Math.Max(probs, _capacity.Probs));
            _caches = [];
            _scratch = null;
        }
        if (_caches.Length < count)
            _caches = Enumerable.Range(0, count).Select(i => i < _caches.Length ? _caches[i] : NewCache()).ToArray();
        _scratch ??= new BlockScratch(checked((int)_capacity.Rows), _c);
        return _caches;
    }

    /// <summary>The embedding rows of the batch's tokens, [rows, hidden], in the first rows of a reused array.</summary>
    internal T[] Embed(BatchRows ctx)
    {
        int n = ctx.Count, d = _c.HiddenSize;
        var x = Grow(ref _x, n * d);
        for (int r = 0; r < n; r++)
        {
            int tok = ctx.Rows.Tokens[r];
            if ((uint)tok >= (uint)_c.VocabSize)
                throw new InputException($"token id {tok} is outside the model's vocabulary of {_c.VocabSize} (tokenizer and model do not match)");
            var (e, off) = _embedRows.Rows(tok, 1);
            Array.Copy(e, off, x, (long)r * d, d);
        }
        return x;
    }

    /// <summary>
    /// Final norm, lm_head and cross-entropy. With dx, also the backward down to the final norm's input: lm_head's
    /// gradient into dHead, the final norm's into gFinalNorm, d(loss*scale)/dx into dx.
    /// </summary>
    internal LossHead<T>.Result Head(BatchRows ctx, T[] x, IHeadGradient<T>? dHead, T[]? gFinalNorm, T[]? dx, double scale,
        Func<LossHead<T>.Result, bool>? backwardIf = null)
    {
        int n = ctx.Count, d = _c.HiddenSize;
        var xn = Grow(ref _xn, n * d);
        var rf = Grow(ref _rf, n);
        RmsNorm<T>.Forward(x, _w[_finalNorm], xn, rf, n, d, _c.RmsNormEps, _threads);
        if (Observer != null && _head != _embed)
            Observer.OnLinearInput(_w.Specs[_head], xn, n, d, ctx.Real);
        var dxn = dx != null ? Grow(ref _dxn, n * d) : null;
        bool backward = dx != null;
        var result = _lossHead.Run(ctx.TargetRows, ctx.Targets, xn, d, _headRows, _c.VocabSize, dHead, dxn, scale, r => backward = backwardIf?.Invoke(r) ?? true);
        if (backward)
            RmsNorm<T>.Backward(x, _w[_finalNorm], rf, dxn!, dx!, gFinalNorm!, n, d, _threads);
        return result;
    }

    /// <summary>Adds dx's rows to the gradient rows of their tokens, in row order.</summary>
    internal void EmbedBackward(BatchRows ctx, T[] dx, T[] gEmb)
    {
        int d = _c.HiddenSize;
        for (int r = 0; r < ctx.Count; r++)
        {
            var dst = gEmb.AsSpan(ctx.Rows.Tokens[r] * d, d);
            TensorPrimitives.Add(dst, dx.AsSpan(r * d, d), dst);
        }
    }

    private LayerCache<T> NewCache() =>
        new(checked((int)_capacity.Rows), checked((int)_capacity.Probs), _c.HiddenSize, _c.QDim, _c.KvDim, _c.IntermediateSize);

    /// <summary>x holds the block's input on entry and its output on return; c keeps what the backward needs.</summary>
    internal void ForwardBlock(int l, T[] x, LayerCache<T> c, BatchRows ctx, IActivationObserver<T>? obs)
    {
        var p = _layers[l];
        var (batch, rows, real, sc) = (ctx.Batch, ctx.Rows, ctx.Real, _scratch!);
        int n = rows.Count, d = _c.HiddenSize, f = _c.IntermediateSize;
        Array.Copy(x, c.XIn, n * d);
        RmsNorm<T>.Forward(c.XIn, _w[p.InNorm], c.Xn1, c.R1, n, d, _c.RmsNormEps, _threads);
        if (obs != null)
            foreach (int i in new[] { p.Q, p.K, p.V }) obs.OnLinearInput(_w.Specs[i], c.Xn1, n, d, real);
        Linear(c.Xn1, p.Q, p.QBias, c.Q, n, _c.QDim, d);
        Linear(c.Xn1, p.K, p.KBias, c.K, n, _c.KvDim, d);
        Linear(c.Xn1, p.V, p.VBias, c.V, n, _c.KvDim, d);
        _rope!.Apply(c.Q, rows.Positions, _c.NumHeads, inverse: false, _threads);
        _rope.Apply(c.K, rows.Positions, _c.NumKvHeads, inverse: false, _threads);
        _attention.Forward(c.Q, c.K, c.V, c.Probs, c.Att, batch.BatchSize, batch.SeqLen, batch.Lengths, rows.Start);
        obs?.OnLinearInput(_w.Specs[p.O], c.Att, n, _c.QDim, real);
        Linear(c.Att, p.O, -1, sc.Dn, n, d, _c.QDim);
        TensorPrimitives.Add<T>(c.XIn.AsSpan(0, n * d), sc.Dn.AsSpan(0, n * d), c.XMid);
        RmsNorm<T>.Forward(c.XMid, _w[p.PostNorm], c.Xn2, c.R2, n, d, _c.RmsNormEps, _threads);
        if (obs != null)
        {
            obs.OnLinearInput(_w.Specs[p.Gate], c.Xn2, n, d, real);
            obs.OnLinearInput(_w.Specs[p.Up], c.Xn2, n, d, real);
        }
        Linear(c.Xn2, p.Gate, -1, c.Gate, n, f, d);
        Linear(c.Xn2, p.Up, -1, c.Up, n, f, d);
        SwiGlu<T>.Forward(c.Gate, c.Up, c.H, _threads, n * f);
        obs?.OnLinearInput(_w.Specs[p.Down], c.H, n, f, real);
        Linear(c.H, p.Down, -1, sc.Dn, n, d, f);
        obs?.OnLinearOutput(_w.Specs[p.Down], sc.Dn, n, d, real);
        TensorPrimitives.Add<T>(c.XMid.AsSpan(0, n * d), sc.Dn.AsSpan(0, n * d), x);
    }

    /// <summary>
    /// Rebuilds a block's cache for its backward from its input x and the kept product outputs already loaded into
    /// c (<see cref="LayerCache{T}.LoadKept"/>): the norms, attention and SwiGLU that <see cref="ForwardBlock"/>
    /// computed, by the same operations on the same values, so the backward sees the same cache bit for bit.
    /// </summary>
    internal void RestoreBlock(int l, T[] x, LayerCache<T> c, BatchRows ctx)
    {
        var p = _layers[l];
        var (batch, rows) = (ctx.Batch, ctx.Rows);
        int n = rows.Count, d = _c.HiddenSize;
        Array.Copy(x, c.XIn, n * d);
        RmsNorm<T>.Forward(c.XIn, _w[p.InNorm], c.Xn1, c.R1, n, d, _c.RmsNormEps, _threads);
        _attention.Forward(c.Q, c.K, c.V, c.Probs, c.Att, batch.BatchSize, batch.SeqLen, batch.Lengths, rows.Start);
        RmsNorm<T>.Forward(c.XMid, _w[p.PostNorm], c.Xn2, c.R2, n, d, _c.RmsNormEps, _threads);
        SwiGlu<T>.Forward(c.Gate, c.Up, c.H, _threads, n * _c.IntermediateSize);
    }

    /// <summary>dx holds dLoss/d(block output) on entry and dLoss/d(block input) on return.</summary>
    internal void BackwardBlock(int l, LayerCache<T> c, T[] dx, ModelWeights<T> g, BatchRows ctx)
    {
        var p = _layers[l];
        var (batch, rows, sc) = (ctx.Batch, ctx.Rows, _scratch!);
        int n = rows.Count, d = _c.HiddenSize, f = _c.IntermediateSize, qd = _c.QDim, kd = _c.KvDim;
        // down_proj: y = H Wd^T  =>  dWd += dY^T H, dH = dY Wd
        WeightGradient(g, p.Down, dx, c.H, d, f, n);
        WeightProduct(false, n, f, d, dx, d, p.Down, f, T.Zero, sc.Dh, f);
        SwiGlu<T>.Backward(c.Gate, c.Up, sc.Dh, sc.DGate, sc.DUp, _threads, n * f);
        WeightGradient(g, p.Gate, sc.DGate, c.Xn2, f, d, n);
        WeightGradient(g, p.Up, sc.DUp, c.Xn2, f, d, n);
        WeightProduct(false, n, d, f, sc.DGate, f, p.Gate, d, T.Zero, sc.Dn, d);
        WeightProduct(false, n, d, f, sc.DUp, f, p.Up, d, T.One, sc.Dn, d);
        // Residual: gradient w.r.t. XMid is dx plus what flows back through the post-attention norm.
        RmsNorm<T>.Backward(c.XMid, _w[p.PostNorm], c.R2, sc.Dn, dx, g[p.PostNorm], n, d, _threads);
        // o_proj
        WeightGradient(g, p.O, dx, c.Att, d, qd, n);
        WeightProduct(false, n, qd, d, dx, d, p.O, qd, T.Zero, sc.DAtt, qd);
        _attention.Backward(c.Q, c.K, c.V, c.Probs, sc.DAtt, sc.Dq, sc.Dk, sc.Dv, batch.BatchSize, batch.SeqLen, batch.Lengths, rows.Start);
        _rope!.Apply(sc.Dq, rows.Positions, _c.NumHeads, inverse: true, _threads);
        _rope.Apply(sc.Dk, rows.Positions, _c.NumKvHeads, inverse: true, _threads);
        LinearBackward(sc.Dq, c.Xn1, p.Q, p.QBias, g, n, qd, d, first: true, sc.Dn);
        LinearBackward(sc.Dk, c.Xn1, p.K, p.KBias, g, n, kd, d, first: false, sc.Dn);
        LinearBackward(sc.Dv, c.Xn1, p.V, p.VBias, g, n, kd, d, first: false, sc.Dn);
        RmsNorm<T>.Backward(c.XIn, _w[p.InNorm], c.R1, sc.Dn, dx, g[p.InNorm], n, d, _threads);
    }

    /// <summary>y = x W^T (+ bias).</summary>
    private void Linear(T[] x, int wi, int bi, T[] y, int n, int outDim, int inDim)
    {
        WeightProduct(true, n, outDim, inDim, x, inDim, wi, inDim, T.Zero, y, outDim);
        if (bi < 0) return;
        var bias = _w[bi];
        for (int r = 0; r < n; r++)
        {
            var row = y.AsSpan(r * outDim, outDim);
            TensorPrimitives.Add(row, bias, row);
        }
    }

    /// <summary>dW += dY^T X, dBias += column sums of dY, dX (+)= dY W.</summary>
    private void LinearBackward(T[] dy, T[] x, int wi, int bi, ModelWeights<T> g, int n, int outDim, int inDim, bool first, T[] dx)
    {
        WeightGradient(g, wi, dy, x, outDim, inDim, n);
        if (bi >= 0)
        {
            var gb = g[bi];
            for (int r = 0; r < n; r++) TensorPrimitives.Add(gb, dy.AsSpan(r * outDim, outDim), gb);
        }
        WeightProduct(false, n, inDim, outDim, dy, outDim, wi, inDim, first ? T.Zero : T.One, dx, inDim);
    }

    /// <summary>
    /// C = A op(W) + beta C for weight matrix wi (op(W) = W^T: a layer's output; W: the gradient of its input), read
    /// from its mapped bf16 bytes where the streamed CPU engine left it there (<see cref="MappedWeights"/>).
    /// </summary>
    private void WeightProduct(bool transW, int m, int n, int k, T[] a, int lda, int wi, int ldw, T beta, T[] c, int ldc)
    {
        if (typeof(T) == typeof(float) && MappedWeights?[wi] is { } mapped)
        {
            if (m > 0 && n > 0)
                Sgemm.Compute(false, transW, m, n, k, 1f, Unsafe.As<float[]>(a), 0, lda, mapped, ldw, float.CreateTruncating(beta), Unsafe.As<float[]>(c), 0, ldc);
        }
        else Gemm.Compute(false, transW, m, n, k, T.One, a, 0, lda, _w[wi], 0, ldw, beta, c, 0, ldc);
    }

    /// <summary>dW += dY^T X for W of [outDim, inDim] and n rows, or dY^T X folded into W's running sums.</summary>
    private void WeightGradient(ModelWeights<T> g, int wi, T[] dy, T[] x, int outDim, int inDim, int n)
    {
        if (typeof(T) == typeof(float) && GradientFolds?[wi] is { } fold)
            Sgemm.Compute(true, false, outDim, inDim, n, 1f, Unsafe.As<float[]>(dy), 0, outDim, Unsafe.As<float[]>(x), 0, inDim,
                0f, Unsafe.As<float[]>(g[wi]), 0, inDim, fold);
        else
            Gemm.Compute(true, false, outDim, inDim, n, T.One, dy, 0, outDim, x, 0, inDim, GradientWrites?[wi] == true ? T.Zero : T.One, g[wi], 0, inDim);
    }

    /// <summary>Per-batch work buffers shared by all blocks of one pass.</summary>
    private sealed class BlockScratch(int n, ModelConfig c)
    {
        public readonly T[] Dn = new T[n * c.HiddenSize];
        public readonly T[] Dh = new T[n * c.IntermediateSize];
        public readonly T[] DGate = new T[n * c.IntermediateSize];
        public readonly T[] DUp = new T[n * c.IntermediateSize];
        public readonly T[] DAtt = new T[n * c.QDim];
        public readonly T[] Dq = new T[n * c.QDim];
        public readonly T[] Dk = new T[n * c.KvDim];
        public readonly T[] Dv = new T[n * c.KvDim];
    }
}
