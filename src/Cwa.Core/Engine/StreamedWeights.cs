using Cwa.Core.Checkpoints;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>
/// The weights of a model that is never widened whole: they stay memory-mapped in their stored dtype, and one
/// block's matrices (or one vocabulary chunk of the embedding and lm_head) at a time are widened to fp32, rounded to
/// the held dtype, checked for NaN/Inf and overlaid with perturbed values. Every block has the same shapes, so one
/// set of fp32 buffers serves all blocks. 1-D tensors (norms, biases) are small and stay resident.
/// </summary>
internal sealed class StreamedWeights : IDisposable
{
    private readonly CheckpointFolder _ckpt;
    private readonly DType _held;
    private readonly Dictionary<int, Dictionary<long, float>> _overlay = new();
    private readonly Dictionary<string, float[]> _blockBuffers = new();
    private readonly int _head;
    private readonly PageWarmer _warmer = new();
    private readonly bool[] _checked;
    private readonly Dictionary<long, float[]> _scoreBuffers = new();
    private int _resident = -1;
    private bool _residentMapped;

    public ModelWeights<float> Slots { get; }
    /// <summary>
    /// Per tensor index, the resident block's matrices that products read straight from the mapping (LoadBlock with
    /// mapped): bf16 widened panel by panel as it is packed. Their <see cref="Slots"/> are then empty.
    /// </summary>
    public Bf16Matrix?[] Mapped { get; }
    public ModelConfig Config => Slots.Config;
    public IReadOnlyList<ParameterSpec> Specs => Slots.Specs;
    public IMatrixRows<float> Embedding { get; }
    public IMatrixRows<float> Head { get; }
    /// <summary>Index of the block whose matrices are bound in <see cref="Slots"/> (-1: none).</summary>
    public int ResidentBlock => _resident;
    /// <summary>Counts the writes of perturbed values: a device holding copies of the weights re-uploads when it changes.</summary>
    public long Version { get; private set; }

    public StreamedWeights(CheckpointFolder ckpt, DType held)
    {
        _ckpt = ckpt;
        _held = held;
        Slots = ModelWeights<float>.Unbound(ckpt.Config);
        Mapped = new Bf16Matrix?[Specs.Count];
        _checked = new bool[Specs.Count];
        for (int t = 0; t < Specs.Count; t++)
            if (!Specs[t].Is2D)
            {
                var values = new float[Specs[t].NumElements];
                Fill(t, 0, values);
                Slots.Bind(t, values);
            }
        int embed = Slots.IndexOf("model.embed_tokens.weight");
        _head = ckpt.Config.TieWordEmbeddings ? embed : Slots.IndexOf("lm_head.weight");
        Embedding = new VocabRows(this, embed);
        Head = ckpt.Config.TieWordEmbeddings ? Embedding : new VocabRows(this, _head);
    }

    /// <summary>
    /// Binds block layer's matrices and unbinds the previous block's. Widened into the shared buffers, or, mapped,
    /// left in the mapping for the products to widen as they pack (<see cref="Mapped"/>) wherever that gives the same
    /// values: stored bf16, held as bf16 or f32, no perturbed values. At 8B widening took 0.2-0.3 s per block and
    /// 0.87 GB of buffers; the products read half the bytes instead.
    /// </summary>
    public void LoadBlock(int layer, bool mapped = false)
    {
        if (_resident == layer && _residentMapped == mapped) return;
        for (int t = 0; t < Specs.Count; t++)
        {
            var spec = Specs[t];
            if (!spec.Is2D || spec.Block < 0) continue;
            if (spec.Block == _resident) Unbind(t);
            if (spec.Block != layer) continue;
            if (mapped && Map(t) is { } matrix)
            {
                Mapped[t] = matrix;
                continue;
            }
            Widen(t);
        }
        _resident = layer;
        _residentMapped = mapped;
    }

    /// <summary>Whether the products can read every block matrix of this checkpoint as mapped (bf16 stored, bf16 or f32 held).</summary>
    public static bool ReadsMapped(CheckpointFolder ckpt, DType held) =>
        LlamaLayout.Parameters(ckpt.Config).Where(s => s.Is2D && s.Block >= 0).All(s => Mappable(ckpt.StoredType(s.Name), held));

    /// <summary>Widening stored values to the held dtype is exact: bf16 held as bf16 or f32 (the products widen it themselves).</summary>
    private static bool Mappable(DType stored, DType held) => stored == DType.BF16 && held is (DType.BF16 or DType.F32);

    private void Widen(int t)
    {
        var spec = Specs[t];
        if (!_blockBuffers.TryGetValue(spec.Component, out var buffer))
            _blockBuffers[spec.Component] = buffer = HugePageArrays.Uninitialized(spec.NumElements); // Fill writes every value
        Fill(t, 0, buffer);
        Slots.Bind(t, buffer);
        Mapped[t] = null;
    }

    private void Unbind(int t)
    {
        Slots.Bind(t, []);
        Mapped[t] = null;
    }

    /// <summary>Tensor t's mapped bf16 values, checked for NaN/Inf once per run; null where widening would change them.</summary>
    private unsafe Bf16Matrix? Map(int t)
    {
        string name = Specs[t].Name;
        if (!Mappable(_ckpt.StoredType(name), _held) || _overlay.ContainsKey(t)) return null;
        var values = MemoryMarshal.Cast<byte, ushort>(_ckpt.RawBytes(name));
        if (!_checked[t])
        {
            long bad = NonFinite.FirstIndexBf16Parallel(values, Gemm.MaxThreads);
            if (bad >= 0) throw HeldValues.NotFinite(_ckpt, name, bad);
            _checked[t] = true;
        }
        // The mapping lives as long as the checkpoint, which outlives these weights: the pointer stays valid.
        return new Bf16Matrix((ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(values)), values.Length);
    }

    /// <summary>
    /// Tensor t's values as scoring reads them: its slot, or, for a mapped matrix, widened into a buffer shared by
    /// the tensors of its size (valid until the next call for that size; at 8B three buffers, 0.3 GB, not 0.87).
    /// </summary>
    public float[] Widened(int t)
    {
        if (Mapped[t] == null) return Slots[t];
        long n = Specs[t].NumElements;
        if (!_scoreBuffers.TryGetValue(n, out var buffer)) _scoreBuffers[n] = buffer = HugePageArrays.Uninitialized(n);
        _ckpt.ReadRange(Specs[t].Name, 0, buffer);
        return buffer;
    }

    /// <summary>What <see cref="Widened"/> holds at most: one buffer per distinct size of a block matrix.</summary>
    public static long ScoringBufferBytes(ModelConfig c) =>
        LlamaLayout.Parameters(c).Where(s => s.Is2D && s.Block == 0).Select(s => s.NumElements).Distinct().Sum() * 4;

    /// <summary>
    /// Starts reading the stored bytes of block layer's matrices from disk, so that widening them later finds them in
    /// memory: called for the next block while the current one computes. A layer outside the model reads nothing.
    /// </summary>
    public void Prefetch(int layer)
    {
        if (layer < 0 || layer >= Config.NumLayers) return;
        foreach (int t in BlockMembers(layer))
            if (Specs[t].Is2D) _ckpt.Prefetch(Specs[t].Name, _warmer);
    }

    /// <summary>The same for lm_head (the embedding when tied), which the loss head reads after the last block.</summary>
    public void PrefetchHead() => _ckpt.Prefetch(Specs[_head].Name, _warmer);

    public void Dispose() => _warmer.Dispose();

    /// <summary>The tensors of block layer (its matrices, norms and biases), in tensor order.</summary>
    public IEnumerable<int> BlockMembers(int layer) => Enumerable.Range(0, Specs.Count).Where(t => Specs[t].Block == layer);

    /// <summary>
    /// Every tensor with the weights scoring reads: block by block, each block widened once (afterBlock runs when its
    /// tensors are done), then the tensors outside the blocks, whose matrices (embedding, lm_head) come as [] to be
    /// read chunk by chunk.
    /// </summary>
    public void ForEachTensor(Action<int, float[]> use, Action? afterBlock = null)
    {
        for (int l = 0; l < Config.NumLayers; l++)
        {
            LoadBlock(l);
            foreach (int t in BlockMembers(l)) use(t, Slots[t]);
            afterBlock?.Invoke();
        }
        ReleaseBlocks();
        OutsideBlocks(use);
    }

    /// <summary>The tensors outside the blocks: 1-D ones with their resident values, the vocabulary matrices as [].</summary>
    public void OutsideBlocks(Action<int, float[]> use)
    {
        foreach (int t in BlockMembers(-1)) use(t, Specs[t].Is2D ? [] : Slots[t]);
    }

    /// <summary>Unbinds the resident block and frees the shared buffers (before a phase that needs the memory).</summary>
    public void ReleaseBlocks()
    {
        if (_resident >= 0)
            for (int t = 0; t < Specs.Count; t++)
                if (Specs[t].Is2D && Specs[t].Block == _resident) Unbind(t);
        _resident = -1;
        _blockBuffers.Clear();
        _scoreBuffers.Clear();
    }

    /// <summary>Values [start, start + into.Length) of tensor t as the engine computes with them.</summary>
    public void Fill(int t, long start, Span<float> into)
    {
        var spec = Specs[t];
        _ckpt.ReadRange(spec.Name, start, into);
        HeldValues.Prepare(_ckpt, spec.Name, start, into, _held);
        if (!_overlay.TryGetValue(t, out var changed)) return;
        foreach (var (index, value) in changed)
            if (index >= start && index < start + into.Length) into[(int)(index - start)] = value;
    }

    public void ReadWeightsAt(int t, ReadOnlySpan<long> flatIndices, Span<float> values)
    {
        for (int i = 0; i < flatIndices.Length; i++)
            Fill(t, flatIndices[i], values.Slice(i, 1));
    }

    /// <summary>
    /// Perturbs weights: they are kept in an overlay applied whenever the tensor is widened (and written into the
    /// resident copy). Writing a weight's original value back removes it from the overlay.
    /// </summary>
    public void WriteWeights(int t, ReadOnlySpan<long> flatIndices, ReadOnlySpan<float> values)
    {
        Version++;
        var changed = _overlay.TryGetValue(t, out var c) ? c : _overlay[t] = new Dictionary<long, float>();
        Span<float> original = stackalloc float[1];
        // A matrix the products read as mapped would not see the new values: it is widened, overlay included, from now on.
        if (Mapped[t] != null) Widen(t);
        var resident = Slots[t];
        for (int i = 0; i < flatIndices.Length; i++)
        {
            long index = flatIndices[i];
            changed.Remove(index);
            Fill(t, index, original);
            if (BitConverter.SingleToInt32Bits(original[0]) != BitConverter.SingleToInt32Bits(values[i])) changed[index] = values[i];
            if (resident.Length > 0) resident[index] = values[i];
        }
        if (changed.Count == 0) _overlay.Remove(t);
    }

    /// <summary>Rows of the embedding or lm_head, widened chunk by chunk into one reused buffer.</summary>
    private sealed class VocabRows(StreamedWeights owner, int tensor) : IMatrixRows<float>
    {
        private float[] _buffer = [];

        public (float[] Array, int Offset) Rows(int first, int count)
        {
            int dim = owner.Specs[tensor].Cols, n = count * dim;
            if (_buffer.Length < n) _buffer = new float[n];
            owner.Fill(tensor, (long)first * dim, _buffer.AsSpan(0, n));
            return (_buffer, 0);
        }
    }
}
