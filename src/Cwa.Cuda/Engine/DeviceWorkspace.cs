using Cwa.Core.Models;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Engine;

/// <summary>
/// The largest batch a workspace serves and what it must keep for it. Streamed: one block at a time (layer
/// streaming), so one block's activations and no saved block inputs (the host keeps those).
/// </summary>
public readonly record struct WorkspaceShape(int Batch, int SeqLen, bool Backward, bool Recompute, long LogitsChunkElements, bool Streamed = false)
{
    public int Tokens => Batch * SeqLen;
    public bool Covers(WorkspaceShape s) =>
        s.Batch <= Batch && s.SeqLen <= SeqLen && s.Tokens <= Tokens && (!s.Backward || Backward) && s.Recompute == Recompute && s.LogitsChunkElements == LogitsChunkElements
        && s.Streamed == Streamed;
    public WorkspaceShape Union(WorkspaceShape s) =>
        new(Math.Max(Batch, s.Batch), Math.Max(SeqLen, s.SeqLen), Backward || s.Backward, Recompute, LogitsChunkElements, Streamed);
}

/// <summary>
/// Every activation and scratch buffer of one forward/backward on the device, for batches up to a shape. Built
/// with no accelerator it allocates nothing and only adds up the bytes, which is how the memory plan printed
/// before a run comes to equal what the run allocates.
/// </summary>
internal sealed class DeviceWorkspace : IDisposable
{
    private readonly Accelerator? _acc;
    private readonly List<MemoryBuffer> _buffers = [];

    public WorkspaceShape Shape { get; }
    public int ChunkRows { get; }
    public long ActivationBytes { get; private set; }
    public long ScratchBytes { get; private set; }

    public LayerBuffers[] Layers { get; }
    public ArrayView<float>[] Saved { get; }
    public ArrayView<float> X, Xn, Rf, Dxn, Dx, Dn, Dh, DGate, DUp, DAtt, Dq, Dk, Dv, Dp, Xs, Logits, Dxs, Nll;
    public ArrayView<int> Tokens, Lengths, Rows, Targets, Hit, SegTokens, SegStart, SegOrder;
    /// <summary>Half copies of GEMM inputs when the weights are bf16/fp16 (GemmEx needs both operands alike).</summary>
    public ArrayView<ushort> StageA, StageB, StageLogits;

    public DeviceWorkspace(Accelerator? acc, ModelConfig c, WorkspaceShape s, bool halfWeights)
    {
        _acc = acc;
        Shape = s;
        long n = s.Tokens, d = c.HiddenSize, f = c.IntermediateSize, qd = c.QDim, kd = c.KvDim;
        long probs = (long)s.Batch * c.NumHeads * s.SeqLen * s.SeqLen;
        ChunkRows = (int)Math.Max(1, Math.Min(n, s.LogitsChunkElements / c.VocabSize));
        int cached = s.Backward && !s.Recompute && !s.Streamed ? c.NumLayers : 1;
        Layers = new LayerBuffers[cached];
        for (int l = 0; l < cached; l++)
            Layers[l] = new LayerBuffers(F(n * d, true), F(n * d, true), F(n, true), F(n * qd, true), F(n * kd, true), F(n * kd, true), F(probs, true),
                F(n * qd, true), F(n * d, true), F(n * d, true), F(n, true), F(n * f, true), F(n * f, true), F(n * f, true));
        Saved = s.Backward && s.Recompute && !s.Streamed ? Enumerable.Range(0, c.NumLayers).Select(_ => F(n * d, true)).ToArray() : [];
        X = F(n * d, true);
        Xn = F(n * d, true);
        Rf = F(n, true);
        bool b = s.Backward;
        Dxn = F(b ? n * d : 0);
        Dx = F(b ? n * d : 0);
        Dn = F(n * d);
        Dh = F(b ? n * f : 0);
        DGate = F(b ? n * f : 0);
        DUp = F(b ? n * f : 0);
        DAtt = F(b ? n * qd : 0);
        Dq = F(b ? n * qd : 0);
        Dk = F(b ? n * kd : 0);
        Dv = F(b ? n * kd : 0);
        Dp = F(b ? probs : 0);
        long chunk = ChunkRows;
        Xs = F(chunk * d);
        Logits = F(chunk * c.VocabSize);
        Dxs = F(b ? chunk * d : 0);
        Nll = F(chunk);
        Tokens = I(n);
        Lengths = I(s.Batch);
        Rows = I(n);
        Targets = I(n);
        Hit = I(chunk);
        SegTokens = I(b ? n : 0);
        SegStart = I(b ? n + 1 : 0);
        SegOrder = I(b ? n : 0);
        long widest = Math.Max(Math.Max(d, f), qd);
        StageA = H(halfWeights ? n * widest : 0);
        StageB = H(halfWeights ? n * widest : 0);
        StageLogits = H(halfWeights && b ? chunk * c.VocabSize : 0);
    }

    public long Bytes => ActivationBytes + ScratchBytes;

    private ArrayView<float> F(long count, bool activation = false) => Alloc<float>(count, activation);
    private ArrayView<int> I(long count) => Alloc<int>(count, false);
    private ArrayView<ushort> H(long count) => Alloc<ushort>(count, false);

    private ArrayView<T> Alloc<T>(long count, bool activation) where T : unmanaged
    {
        long bytes = Math.Max(1, count) * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (activation) ActivationBytes += bytes;
        else ScratchBytes += bytes;
        if (_acc == null) return default;
        var buffer = _acc.Allocate1D<T>(Math.Max(1, count));
        _buffers.Add(buffer);
        return buffer.View;
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }
}

/// <summary>Activations of one transformer block that its backward pass needs (as LayerCache on the CPU).</summary>
internal sealed record LayerBuffers(ArrayView<float> XIn, ArrayView<float> Xn1, ArrayView<float> R1, ArrayView<float> Q, ArrayView<float> K, ArrayView<float> V,
    ArrayView<float> Probs, ArrayView<float> Att, ArrayView<float> XMid, ArrayView<float> Xn2, ArrayView<float> R2, ArrayView<float> Gate, ArrayView<float> Up, ArrayView<float> H);
