using System.Numerics.Tensors;

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
    public float[] Total { get; } = new float[length];
    public float[]? Squares { get; } = mode == Accumulation.PerBatch ? new float[length] : null;
    // The batch buffer exists only for tensors the engine writes whole (the vocabulary tensors go by chunks and rows).
    private float[]? _batch;

    public Accumulation Mode => mode;

    /// <summary>Where the engine accumulates.</summary>
    public float[] Target => mode == Accumulation.Sum ? Total : _batch ??= new float[length];

    public void Clear()
    {
        Array.Clear(Total);
        if (Squares != null) Array.Clear(Squares);
    }

    public void StartBatch()
    {
        if (_batch != null) Array.Clear(_batch);
    }

    public void EndBatch(double scale, int batch, string tensor)
    {
        if (_batch != null) AddBatch(0, _batch, scale, batch, tensor);
    }

    public void AddBatch(long offset, ReadOnlySpan<float> g, double scale, int batch, string tensor)
    {
        long bad = NonFinite.FirstIndex(g);
        if (bad >= 0)
            throw new CwaException($"calibration batch {batch}: gradient of {tensor} not finite at flat index {offset + bad}; check the model weights and data");
        var total = Total.AsSpan((int)offset, g.Length);
        var squares = Squares.AsSpan((int)offset, g.Length);
        TensorPrimitives.MultiplyAdd(g, g, squares, squares);
        TensorPrimitives.MultiplyAdd(g, (float)scale, total, total);
    }
}

/// <summary>lm_head's gradient of one batch, chunk by chunk of vocabulary rows, added to the sums as each chunk completes.</summary>
internal sealed class PerBatchHeadGradient(GradientSums sums, int dim, double scale, string tensor) : IHeadGradient<float>
{
    private float[] _chunk = [];
    public int Batch { get; set; }

    public (float[] Array, int Offset) Rows(int first, int count)
    {
        int n = count * dim;
        if (_chunk.Length < n) _chunk = new float[n];
        Array.Clear(_chunk, 0, n);
        return (_chunk, 0);
    }

    public void Done(int first, int count) => sums.AddBatch((long)first * dim, _chunk.AsSpan(0, count * dim), scale, Batch, tensor);
}
