namespace Cwa.Core.Engine;

/// <summary>How a layer-major gradient pass accumulates a tensor's gradient over the batches.</summary>
internal enum Accumulation
{
    /// <summary>In place, each batch's gradient scaled as the batch-major pass scales it (bit-identical sums).</summary>
    Sum,
    /// <summary>Each batch's gradient apart: the scaled sum and the sum of squares (empirical Fisher) are both kept.</summary>
    PerBatch,
}

/// <summary>
/// The running sums of one tensor on the host. Sum: the engine accumulates straight into Total. PerBatch: into a
/// batch buffer, whose scaled values and squares are added to Total and Squares (as the batch-major pass adds them).
/// </summary>
internal sealed class GradientSums(long length, Accumulation mode)
{
    private readonly float[] _total = HugePageArrays.Zeroed(length);
    private readonly float[]? _squares = mode == Accumulation.PerBatch ? HugePageArrays.Zeroed(length) : null;
    // The sums hold no batch yet, whatever their memory says. PerBatch: clearing 2 x 0.9 GB per 8B block and then
    // adding the first batch to the zeros moved about 5 GB per block that writing the first whole batch does not. Sum:
    // only where the engine's first product writes Total whole (Clear(overwritten: true)).
    private bool _unset;

    public float[] Total
    {
        get { Settle(); return _total; }
    }

    public float[]? Squares
    {
        get { Settle(); return _squares; }
    }
    // The batch buffer exists only for tensors the engine writes whole (the vocabulary tensors go by chunks and rows).
    private float[]? _batch;
    // EndBatch zeroes the batch buffer as it consumes it (while the chunk is in cache), so StartBatch need not sweep it again.
    private bool _batchZero = true;
    private GemmFold? _fold;
    private bool _folding;

    /// <summary>Elements a thread adds at a time: small enough to stay in its cache between the passes over it.</summary>
    private const int Chunk = 1 << 16;

    public Accumulation Mode => mode;

    public long Length => length;

    /// <summary>Whether the batch buffer has been made (folded weight matrices make it only for batches that need it).</summary>
    internal bool HoldsBatchBuffer => _batch != null;

    /// <summary>Where the engine accumulates (Sum after an overwriting Clear: stale until the first batch writes it).</summary>
    public float[] Target => mode == Accumulation.Sum ? _total : _batch ??= HugePageArrays.Zeroed(length);

    /// <summary>
    /// Empties the sums. PerBatch: only marks them so; the next whole batch overwrites them. Sum: zeroes Total, or,
    /// overwritten, only marks it so: the engine then writes the first batch's gradient whole (<see cref="HoldsNoBatch"/>
    /// says when), which saves zeroing 0.9 GB per 8B block and reading the zeros back.
    /// </summary>
    public void Clear(bool overwritten = false)
    {
        if (mode == Accumulation.PerBatch || overwritten) _unset = true;
        else Array.Clear(_total);
    }

    /// <summary>Whether nothing has been added since <see cref="Clear"/> marked the sums empty: Target's values are stale and the next batch must write them.</summary>
    public bool HoldsNoBatch => _unset;

    private void Settle()
    {
        if (!_unset) return;
        Array.Clear(_total);
        if (_squares != null) Array.Clear(_squares);
        _unset = false;
    }

    public void StartBatch()
    {
        if (_batch != null && !_batchZero) Array.Clear(_batch);
        _batchZero = false;
    }

    /// <summary>
    /// Starts a batch whose gradient the engine's product folds into the sums as it computes it (PerBatch, whole
    /// weight matrices): the batch buffer is then only the product's scratch, and nothing clears it.
    /// </summary>
    public GemmFold StartFoldedBatch(double scale)
    {
        var fold = _fold ??= new GemmFold(_total, _squares ?? throw new InvalidOperationException("only per-batch sums fold"));
        fold.Start(scale, first: _unset);
        _folding = true;
        return fold;
    }

    /// <summary>Adds the batch buffer to the sums (<see cref="AddBatch"/>) and zeroes it, or checks the fold that added it.</summary>
    public void EndBatch(double scale, int batch, string tensor)
    {
        if (mode == Accumulation.Sum)
        {
            _unset = false;
            return;
        }
        if (_folding)
        {
            _folding = false;
            CheckFold(batch, tensor);
            _unset = false;
            return;
        }
        if (_batch is not { } g) return;
        AddBatch(0, g, 0, g.Length, scale, batch, tensor, clear: true, first: _unset);
        _unset = false;
        _batchZero = true;
    }

    private void CheckFold(int batch, string tensor)
    {
        if (!_fold!.Applied) throw new InvalidOperationException($"no product folded batch {batch} into {tensor}'s sums");
        if (_fold.FirstBad >= 0) throw NotFinite(batch, tensor, _fold.FirstBad);
    }

    // A batch whose gradient comes in pieces (lm_head's vocabulary chunks), each folded or added as it completes. While
    // the sums hold no batch yet (after Clear) every piece writes its values, as a whole first batch does.

    /// <summary>Starts folding a piece of this batch (<see cref="EndFoldedPiece"/> checks it).</summary>
    public GemmFold StartFoldedPiece(double scale)
    {
        var fold = _fold ??= new GemmFold(_total, _squares ?? throw new InvalidOperationException("only per-batch sums fold"));
        fold.Start(scale, first: _unset);
        return fold;
    }

    public void EndFoldedPiece(int batch, string tensor) => CheckFold(batch, tensor);

    /// <summary>Adds a piece of this batch that was computed into a buffer (<see cref="AddBatch"/>).</summary>
    public void AddPiece(long offset, float[] g, int count, double scale, int batch, string tensor) =>
        AddBatch(offset, g, 0, count, scale, batch, tensor, first: _unset);

    /// <summary>Every piece of the batch is in.</summary>
    public void EndPieces() => _unset = false;

    /// <summary>
    /// Adds g[from, from + count), one batch's gradient of flat indices offset.., scaled, to Total and its squares
    /// to Squares; clear zeroes those values of g as they are consumed. Chunk by chunk on every thread: at 8B a block's
    /// buffers are 0.9 GB each, and one thread's memory bandwidth made this a tenth of the pass. first: g is the whole
    /// tensor's first batch, written rather than added (the same values: x + 0 is x, and -0 + 0 is the +0 it writes).
    /// </summary>
    public void AddBatch(long offset, float[] g, int from, int count, double scale, int batch, string tensor, bool clear = false, bool first = false)
    {
        if (!first) Settle();
        var total = _total;
        var squares = _squares!;
        int chunks = (count + Chunk - 1) / Chunk;
        var bad = new long[chunks];
        Gemm.ParallelFor(chunks, Gemm.MaxThreads, c =>
        {
            int start = from + c * Chunk, n = Math.Min(Chunk, from + count - start);
            var x = g.AsSpan(start, n);
            bad[c] = NonFinite.FirstIndex(x);
            if (bad[c] >= 0) return;
            int at = checked((int)(offset + start - from));
            GemmFold.Add(x, squares.AsSpan(at, n), total.AsSpan(at, n), (float)scale, first);
            if (clear) x.Clear();
        });
        for (int c = 0; c < chunks; c++)
            if (bad[c] >= 0)
                throw NotFinite(batch, tensor, offset + (long)c * Chunk + bad[c]);
    }

    private static CwaException NotFinite(int batch, string tensor, long index) =>
        new($"calibration batch {batch}: gradient of {tensor} not finite at flat index {index}; check the model weights and data");
}

/// <summary>
/// lm_head's gradient of one batch, chunk by chunk of vocabulary rows: each chunk folded into the sums by its product,
/// or, where the product writes C (batches deeper than one SGEMM step), computed into a chunk and added when complete.
/// </summary>
internal sealed class PerBatchHeadGradient(GradientSums sums, int dim, double scale, string tensor) : IHeadGradient<float>
{
    private float[] _chunk = [];
    private bool _folded;
    public int Batch { get; set; }

    public GemmFold? Fold(int first, int count, int depth)
    {
        _folded = !Sgemm.FoldWritesC(count, dim, depth);
        return _folded ? sums.StartFoldedPiece(scale) : null;
    }

    public (float[] Array, int Offset) Rows(int first, int count)
    {
        _folded = false;
        int n = count * dim;
        if (_chunk.Length < n) _chunk = new float[n];
        Array.Clear(_chunk, 0, n);
        return (_chunk, 0);
    }

    public void Done(int first, int count)
    {
        if (_folded) sums.EndFoldedPiece(Batch, tensor);
        else sums.AddPiece((long)first * dim, _chunk, count * dim, scale, Batch, tensor);
    }

    /// <summary>The batch's backward is over (only for batches that ran one).</summary>
    public void EndBatch() => sums.EndPieces();
}
