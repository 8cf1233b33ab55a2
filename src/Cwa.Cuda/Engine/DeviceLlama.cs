using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Cuda.Gemm;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Engine;

/// <summary>
/// The Llama-family decoder of the CPU engine (LlamaModel) on a device: the same forward, the same hand-written
/// backward, op for op, with weights resident in their storage format, fp32 activations, fp32 gradient buffers,
/// and matrix products through an <see cref="IDeviceGemm"/> (cuBLAS on a GPU). When the weights are bf16/fp16 the
/// activation side of each product is rounded to that format first, as GemmEx takes both inputs alike; with fp32
/// weights every product is fp32.
/// </summary>
internal sealed class DeviceLlama : IDisposable
{
    private readonly DeviceOps _ops;
    private readonly IDeviceGemm _gemm;
    private readonly ModelConfig _c;
    private readonly IReadOnlyList<ParameterSpec> _specs;
    private readonly DeviceTensor[] _w;
    private readonly EngineOptions _options;
    private readonly long _logitsChunk;
    private readonly LayerParams[] _layers;
    private readonly int _embed, _finalNorm, _head;
    private readonly DeviceAttention _attention;
    private readonly DeviceLossHead _lossHead;
    private readonly bool _half;
    private readonly bool _streamed;
    private MemoryBuffer1D<float, Stride1D.Dense>? _cos, _sin;
    private int _ropePositions;
    private DeviceWorkspace? _ws;

    /// <param name="weights">
    /// the resident tensors by index; a layer-streamed model binds only the loaded block's, the 1-D tensors and (while
    /// the head runs) lm_head, and the entry points it uses read nothing else
    /// </param>
    /// <param name="format">how the 2-D weights are held (the activations of a product are rounded to it)</param>
    public DeviceLlama(DeviceOps ops, IDeviceGemm gemm, ModelConfig config, IReadOnlyList<ParameterSpec> specs, DeviceTensor[] weights, StorageFormat format,
        EngineOptions options, long logitsChunkElements, bool streamed = false)
    {
        _streamed = streamed;
        _ops = ops;
        _gemm = gemm;
        _c = config;
        _specs = specs;
        _w = weights;
        _options = options;
        _logitsChunk = logitsChunkElements;
        _layers = LayerParams.Resolve(specs, config.NumLayers);
        _embed = LlamaLayout.IndexOf(specs, "model.embed_tokens.weight");
        _finalNorm = LlamaLayout.IndexOf(specs, "model.norm.weight");
        _head = config.TieWordEmbeddings ? _embed : LlamaLayout.IndexOf(specs, "lm_head.weight");
        if (config.NumHeads % config.NumKvHeads != 0)
            throw new InputException($"num_attention_heads {config.NumHeads} is not a multiple of num_key_value_heads {config.NumKvHeads}");
        _attention = new DeviceAttention(gemm, ops, config.NumHeads, config.NumKvHeads, config.HeadDim);
        _lossHead = new DeviceLossHead(gemm, ops);
        _half = format != StorageFormat.F32;
    }

    public IActivationObserver<float>? Observer { get; set; }

    /// <summary>The workspace a batch of this shape needs (what the memory plan counts).</summary>
    public WorkspaceShape ShapeFor(int batch, int seqLen, bool backward) => new(batch, seqLen, backward, _options.Recompute, _logitsChunk, _streamed);

    /// <summary>Allocates the workspace for batches up to this shape now (Run grows it when a larger batch comes).</summary>
    public void Reserve(WorkspaceShape shape) => Workspace(shape);

    /// <summary>Loss sums of one batch; with grads, adds scale * dLoss/dW into them.</summary>
    public DeviceLossHead.Result Run(Batch batch, DeviceTensor[]? grads, double scale)
    {
        int n = batch.BatchSize * batch.SeqLen, d = _c.HiddenSize;
        foreach (int tok in batch.Tokens)
            if ((uint)tok >= (uint)_c.VocabSize)
                throw new InputException($"token id {tok} is outside the model's vocabulary of {_c.VocabSize} (tokenizer and model do not match)");
        bool backward = grads != null;
        var (ws, real) = Begin(batch, backward);

        _ops.Embed(ws.Tokens, _w[_embed], ws.X, n, d);
        bool keepAll = backward && !_options.Recompute;
        for (int l = 0; l < _c.NumLayers; l++)
        {
            if (backward && _options.Recompute) DeviceOps.Copy(ws.X, ws.Saved[l], (long)n * d);
            ForwardBlock(l, ws.X, ws.Layers[keepAll ? l : 0], ws, batch, real, Observer);
        }
        _ops.RmsNormForward(ws.X, _w[_finalNorm].Floats, ws.Xn, ws.Rf, n, d, (float)_c.RmsNormEps);
        if (Observer != null && _head != _embed) Observer.OnLinearInput(_specs[_head], Host(ws.Xn, (long)n * d), n, d, real);
        var result = _lossHead.Run(batch, ws, ws.Xn, d, _w[_head], _c.VocabSize, backward ? grads![_head].Floats : default, backward ? ws.Dxn : default, scale);
        if (!backward) return result;

        ws.Dx.SubView(0, (long)n * d).MemSetToZero();
        _ops.RmsNormBackward(ws.X, _w[_finalNorm].Floats, ws.Rf, ws.Dxn, ws.Dx, grads![_finalNorm].Floats, n, d);
        for (int l = _c.NumLayers - 1; l >= 0; l--)
        {
            var cache = ws.Layers[keepAll ? l : 0];
            if (_options.Recompute)
            {
                // X is free once the final norm's backward has read it: recompute the block from its saved input there.
                DeviceOps.Copy(ws.Saved[l], ws.X, (long)n * d);
                ForwardBlock(l, ws.X, cache, ws, batch, real, null);
            }
            BackwardBlock(l, cache, ws, grads, batch);
        }
        EmbeddingGradient(batch, real, ws, grads[_embed].Floats);
        return result;
    }

    /// <summary>The workspace for this batch with its tokens, lengths and rope tables on the device, and its real-row mask.</summary>
    private (DeviceWorkspace Ws, bool[] Real) Begin(Batch batch, bool backward)
    {
        int bsz = batch.BatchSize, s = batch.SeqLen, n = bsz * s;
        var ws = Workspace(ShapeFor(bsz, s, backward));
        EnsureRope(s);
        ws.Tokens.SubView(0, n).CopyFromCPU(batch.Tokens);
        ws.Lengths.SubView(0, bsz).CopyFromCPU(batch.Lengths);
        var real = new bool[n];
        for (int b = 0; b < bsz; b++)
            for (int t = 0; t < batch.Lengths[b]; t++) real[b * s + t] = true;
        return (ws, real);
    }

    /// <summary>Layer streaming: block l's forward on a batch's packed rows x (input in, output out).</summary>
    public void StreamForward(int l, Batch batch, PackedRows rows, float[] x)
    {
        var (ws, real) = Begin(batch, backward: false);
        Upload(batch, rows, x, ws.X);
        ForwardBlock(l, ws.X, ws.Layers[0], ws, batch, real, Observer);
        Download(batch, rows, ws.X, x);
    }

    /// <summary>
    /// Layer streaming: block l recomputed from its saved input x, then its backward from dx (the output's gradient in,
    /// the input's out), adding the batch's weight gradients into grads.
    /// </summary>
    public void StreamBackward(int l, Batch batch, PackedRows rows, float[] x, float[] dx, DeviceTensor[] grads)
    {
        var (ws, real) = Begin(batch, backward: true);
        Upload(batch, rows, x, ws.X);
        ForwardBlock(l, ws.X, ws.Layers[0], ws, batch, real, null);
        Upload(batch, rows, dx, ws.Dx);
        BackwardBlock(l, ws.Layers[0], ws, grads, batch);
        Download(batch, rows, ws.Dx, dx);
    }

    /// <summary>
    /// Layer streaming: final norm, lm_head and loss of a batch's packed rows x. With dx, the backward too: lm_head's
    /// gradient into gHead, the final norm's into gNorm, d(loss*scale)/dx into dx (packed rows).
    /// </summary>
    public DeviceLossHead.Result StreamHead(Batch batch, PackedRows rows, float[] x, ArrayView<float> gHead, ArrayView<float> gNorm, float[]? dx, double scale)
    {
        int n = batch.BatchSize * batch.SeqLen, d = _c.HiddenSize;
        bool backward = dx != null;
        var (ws, real) = Begin(batch, backward);
        Upload(batch, rows, x, ws.X);
        _ops.RmsNormForward(ws.X, _w[_finalNorm].Floats, ws.Xn, ws.Rf, n, d, (float)_c.RmsNormEps);
        if (Observer != null && _head != _embed) Observer.OnLinearInput(_specs[_head], Host(ws.Xn, (long)n * d), n, d, real);
        var result = _lossHead.Run(batch, ws, ws.Xn, d, _w[_head], _c.VocabSize, backward ? gHead : default, backward ? ws.Dxn : default, scale);
        if (!backward) return result;
        ws.Dx.SubView(0, (long)n * d).MemSetToZero();
        _ops.RmsNormBackward(ws.X, _w[_finalNorm].Floats, ws.Rf, ws.Dxn, ws.Dx, gNorm, n, d);
        Download(batch, rows, ws.Dx, dx!);
        return result;
    }

    /// <summary>Packed rows (each sequence's real tokens back to back) into the padded [batch * seqLen, hidden] layout, padding rows zero.</summary>
    private void Upload(Batch batch, PackedRows rows, float[] packed, ArrayView<float> padded)
    {
        int d = _c.HiddenSize;
        padded.SubView(0, (long)batch.BatchSize * batch.SeqLen * d).MemSetToZero();
        for (int b = 0; b < batch.BatchSize; b++)
            if (batch.Lengths[b] > 0)
                padded.SubView((long)b * batch.SeqLen * d, (long)batch.Lengths[b] * d).CopyFromCPU(packed.AsSpan(rows.Start[b] * d, batch.Lengths[b] * d));
    }

    private void Download(Batch batch, PackedRows rows, ArrayView<float> padded, float[] packed)
    {
        int d = _c.HiddenSize;
        for (int b = 0; b < batch.BatchSize; b++)
            if (batch.Lengths[b] > 0)
                padded.SubView((long)b * batch.SeqLen * d, (long)batch.Lengths[b] * d).CopyToCPU(packed.AsSpan(rows.Start[b] * d, batch.Lengths[b] * d));
    }

    private void ForwardBlock(int l, ArrayView<float> x, LayerBuffers c, DeviceWorkspace ws, Batch batch, bool[] real, IActivationObserver<float>? obs)
    {
        var p = _layers[l];
        int n = batch.BatchSize * batch.SeqLen, d = _c.HiddenSize, f = _c.IntermediateSize;
        float eps = (float)_c.RmsNormEps;
        DeviceOps.Copy(x, c.XIn, (long)n * d);
        _ops.RmsNormForward(c.XIn, _w[p.InNorm].Floats, c.Xn1, c.R1, n, d, eps);
        if (obs != null)
        {
            var host = Host(c.Xn1, (long)n * d);
            foreach (int i in new[] { p.Q, p.K, p.V }) obs.OnLinearInput(_specs[i], host, n, d, real);
        }
        // Each input is rounded to the weights' format once and shared by the projections that read it.
        var fmt = _w[p.Q].Format;
        var xn1 = _ops.Staged(c.Xn1, (long)n * d, d, ws.StageA, fmt);
        Linear(xn1, p.Q, p.QBias, c.Q, n, _c.QDim);
        Linear(xn1, p.K, p.KBias, c.K, n, _c.KvDim);
        Linear(xn1, p.V, p.VBias, c.V, n, _c.KvDim);
        Rope(c.Q, n, batch.SeqLen, _c.NumHeads, inverse: false);
        Rope(c.K, n, batch.SeqLen, _c.NumKvHeads, inverse: false);
        _attention.Forward(c.Q, c.K, c.V, c.Probs, c.Att, ws.Lengths, batch.BatchSize, batch.SeqLen);
        if (obs != null) obs.OnLinearInput(_specs[p.O], Host(c.Att, (long)n * _c.QDim), n, _c.QDim, real);
        Linear(_ops.Staged(c.Att, (long)n * _c.QDim, _c.QDim, ws.StageA, fmt), p.O, -1, ws.Dn, n, d);
        _ops.Add(c.XIn, ws.Dn, c.XMid, n * d);
        _ops.RmsNormForward(c.XMid, _w[p.PostNorm].Floats, c.Xn2, c.R2, n, d, eps);
        if (obs != null)
        {
            var host = Host(c.Xn2, (long)n * d);
            obs.OnLinearInput(_specs[p.Gate], host, n, d, real);
            obs.OnLinearInput(_specs[p.Up], host, n, d, real);
        }
        var xn2 = _ops.Staged(c.Xn2, (long)n * d, d, ws.StageA, fmt);
        Linear(xn2, p.Gate, -1, c.Gate, n, f);
        Linear(xn2, p.Up, -1, c.Up, n, f);
        _ops.SwiGluForward(c.Gate, c.Up, c.H, n * f);
        if (obs != null) obs.OnLinearInput(_specs[p.Down], Host(c.H, (long)n * f), n, f, real);
        Linear(_ops.Staged(c.H, (long)n * f, f, ws.StageA, fmt), p.Down, -1, ws.Dn, n, d);
        if (obs != null) obs.OnLinearOutput(_specs[p.Down], Host(ws.Dn, (long)n * d), n, d, real);
        _ops.Add(c.XMid, ws.Dn, x, n * d);
    }

    /// <summary>ws.Dx holds dLoss/d(block output) on entry and dLoss/d(block input) on return.</summary>
    private void BackwardBlock(int l, LayerBuffers c, DeviceWorkspace ws, DeviceTensor[] g, Batch batch)
    {
        var p = _layers[l];
        int n = batch.BatchSize * batch.SeqLen, d = _c.HiddenSize, f = _c.IntermediateSize, qd = _c.QDim, kd = _c.KvDim;
        var dx = ws.Dx;
        // down_proj: y = H Wd^T  =>  dWd += dY^T H, dH = dY Wd
        var fmt = _w[p.Down].Format;
        var dy = _ops.Staged(dx, (long)n * d, d, ws.StageA, fmt);
        var h = _ops.Staged(c.H, (long)n * f, f, ws.StageB, fmt);
        _gemm.Gemm(true, false, d, f, n, 1f, dy, h, 1f, g[p.Down].Floats, 0, f);
        _gemm.Gemm(false, false, n, f, d, 1f, dy, _w[p.Down].At(0, f), 0f, ws.Dh, 0, f);
        _ops.SwiGluBackward(c.Gate, c.Up, ws.Dh, ws.DGate, ws.DUp, n * f);
        // gate/up: dW += dZ^T Xn2, dXn2 = dGate Wg + dUp Wu
        var xn2 = _ops.Staged(c.Xn2, (long)n * d, d, ws.StageB, fmt);
        var dGate = _ops.Staged(ws.DGate, (long)n * f, f, ws.StageA, fmt);
        _gemm.Gemm(true, false, f, d, n, 1f, dGate, xn2, 1f, g[p.Gate].Floats, 0, d);
        _gemm.Gemm(false, false, n, d, f, 1f, dGate, _w[p.Gate].At(0, d), 0f, ws.Dn, 0, d);
        var dUp = _ops.Staged(ws.DUp, (long)n * f, f, ws.StageA, fmt);
        _gemm.Gemm(true, false, f, d, n, 1f, dUp, xn2, 1f, g[p.Up].Floats, 0, d);
        _gemm.Gemm(false, false, n, d, f, 1f, dUp, _w[p.Up].At(0, d), 1f, ws.Dn, 0, d);
        // Residual: gradient w.r.t. XMid is dx plus what flows back through the post-attention norm.
        _ops.RmsNormBackward(c.XMid, _w[p.PostNorm].Floats, c.R2, ws.Dn, dx, g[p.PostNorm].Floats, n, d);
        LinearBackward(dx, _ops.Staged(c.Att, (long)n * qd, qd, ws.StageB, fmt), p.O, -1, g, n, d, first: true, ws.DAtt, ws);
        _attention.Backward(c.Q, c.K, c.V, c.Probs, ws.DAtt, ws.Dq, ws.Dk, ws.Dv, ws.Dp, ws.Lengths, batch.BatchSize, batch.SeqLen);
        Rope(ws.Dq, n, batch.SeqLen, _c.NumHeads, inverse: true);
        Rope(ws.Dk, n, batch.SeqLen, _c.NumKvHeads, inverse: true);
        var xn1 = _ops.Staged(c.Xn1, (long)n * d, d, ws.StageB, fmt);
        LinearBackward(ws.Dq, xn1, p.Q, p.QBias, g, n, qd, first: true, ws.Dn, ws);
        LinearBackward(ws.Dk, xn1, p.K, p.KBias, g, n, kd, first: false, ws.Dn, ws);
        LinearBackward(ws.Dv, xn1, p.V, p.VBias, g, n, kd, first: false, ws.Dn, ws);
        _ops.RmsNormBackward(c.XIn, _w[p.InNorm].Floats, c.R1, ws.Dn, dx, g[p.InNorm].Floats, n, d);
    }

    /// <summary>y = x W^T (+ bias); x is already in the weights' format (Staged), its row length is the input size.</summary>
    private void Linear(in Operand x, int wi, int bi, ArrayView<float> y, int n, int outDim)
    {
        _gemm.Gemm(false, true, n, outDim, x.Ld, 1f, x, _w[wi].At(0, x.Ld), 0f, y, 0, outDim);
        if (bi >= 0) _ops.AddBias(y, _w[bi].Floats, n, outDim);
    }

    /// <summary>dW += dY^T X, dBias += column sums of dY, dX (+)= dY W; x is already in the weights' format.</summary>
    private void LinearBackward(ArrayView<float> dyF, in Operand x, int wi, int bi, DeviceTensor[] g, int n, int outDim, bool first, ArrayView<float> dx, DeviceWorkspace ws)
    {
        var w = _w[wi];
        int inDim = x.Ld;
        var dy = _ops.Staged(dyF, (long)n * outDim, outDim, ws.StageA, w.Format);
        _gemm.Gemm(true, false, outDim, inDim, n, 1f, dy, x, 1f, g[wi].Floats, 0, inDim);
        if (bi >= 0) _ops.ColumnSumAdd(dyF, g[bi].Floats, n, outDim);
        _gemm.Gemm(false, false, n, inDim, outDim, 1f, dy, w.At(0, inDim), first ? 0f : 1f, dx, 0, inDim);
    }

    /// <summary>gEmb[token] += dx of every real row holding it, grouped on the host so the device needs no atomics.</summary>
    private void EmbeddingGradient(Batch batch, bool[] real, DeviceWorkspace ws, ArrayView<float> gEmb)
    {
        var byToken = new SortedDictionary<int, List<int>>();
        for (int r = 0; r < real.Length; r++)
        {
            if (!real[r]) continue;
            int tok = batch.Tokens[r];
            if (!byToken.TryGetValue(tok, out var list)) byToken[tok] = list = [];
            list.Add(r);
        }
        if (byToken.Count == 0) return;
        var tokens = byToken.Keys.ToArray();
        var start = new int[tokens.Length + 1];
        var order = new List<int>();
        int u = 0;
        foreach (var rows in byToken.Values)
        {
            start[u++] = order.Count;
            order.AddRange(rows);
        }
        start[u] = order.Count;
        ws.SegTokens.SubView(0, tokens.Length).CopyFromCPU(tokens);
        ws.SegStart.SubView(0, start.Length).CopyFromCPU(start);
        ws.SegOrder.SubView(0, order.Count).CopyFromCPU(order.ToArray());
        _ops.EmbeddingGrad(ws.SegTokens, ws.SegStart, ws.SegOrder, ws.Dx, gEmb, tokens.Length, _c.HiddenSize);
    }

    private void Rope(ArrayView<float> x, int rows, int seqLen, int heads, bool inverse) =>
        _ops.Rope(x, _cos!.View, _sin!.View, rows, seqLen, heads, _c.HeadDim / 2, inverse);

    private void EnsureRope(int seqLen)
    {
        if (_cos != null && _ropePositions >= seqLen) return;
        var rope = new Rope<float>(_c, Math.Max(seqLen, 16));
        _cos?.Dispose();
        _sin?.Dispose();
        _cos = _ops.Accelerator.Allocate1D(rope.CosTable);
        _sin = _ops.Accelerator.Allocate1D(rope.SinTable);
        _ropePositions = rope.MaxPositions;
    }

    private DeviceWorkspace Workspace(WorkspaceShape shape)
    {
        if (_ws != null && _ws.Shape.Covers(shape)) return _ws;
        var grown = _ws == null ? shape : _ws.Shape.Union(shape);
        _ws?.Dispose();
        _ws = null;
        _ws = new DeviceWorkspace(_ops.Accelerator, _c, grown, _half);
        return _ws;
    }

    private static float[] Host(ArrayView<float> view, long count)
    {
        var host = new float[count];
        view.SubView(0, count).CopyToCPU(host.AsSpan());
        return host;
    }

    public void Dispose()
    {
        _ws?.Dispose();
        _cos?.Dispose();
        _sin?.Dispose();
    }
}
