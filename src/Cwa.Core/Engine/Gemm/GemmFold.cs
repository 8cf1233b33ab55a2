using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// Running sums that a weight-gradient product adds one batch's gradient g to while it computes it (Fisher's per-batch
/// sums): Squares += g², Total += scale·g, or, for a tensor's first batch, written. <see cref="Sgemm"/> hands each
/// finished row piece of C here while it is still in cache, so the batch's gradient never goes to memory and is never
/// read back (at 8B that was two passes over a 0.9 GB buffer per block and batch). Indices are those of C's array.
/// </summary>
internal sealed class GemmFold(float[] total, float[] squares)
{
    private float _scale;
    private bool _first;
    private long _firstBad;

    /// <summary>Whether a product has folded its values since <see cref="Start"/>.</summary>
    public bool Applied { get; private set; }

    /// <summary>The smallest C index whose value was NaN or infinite (its row piece was not added), or -1.</summary>
    public long FirstBad => _firstBad == long.MaxValue ? -1 : _firstBad;

    public void Start(double scale, bool first)
    {
        _scale = (float)scale;
        _first = first;
        _firstBad = long.MaxValue;
        Applied = false;
    }

    internal void MarkApplied() => Applied = true;

    /// <summary>Adds g, the values of C[index, index + g.Length). Row pieces may come from several threads at once.</summary>
    public void Row(ReadOnlySpan<float> g, int index)
    {
        long bad = NonFinite.FirstIndex(g);
        if (bad >= 0)
        {
            long at = index + bad, seen;
            while (at < (seen = Interlocked.Read(ref _firstBad)) && Interlocked.CompareExchange(ref _firstBad, at, seen) != seen) { }
            return;
        }
        Add(g, squares.AsSpan(index, g.Length), total.AsSpan(index, g.Length), _scale, _first);
    }

    /// <summary>
    /// The arithmetic of one batch's fold, shared with <see cref="GradientSums.AddBatch"/> so that both give the same
    /// bits as the batch-major pass (a product, then a sum, each rounded). first: the sums hold no batch yet and are
    /// written; x + 0 is x, and the explicit + 0 turns -0 into the +0 that adding to zeros gives.
    /// </summary>
    public static void Add(ReadOnlySpan<float> g, Span<float> squares, Span<float> total, float scale, bool first)
    {
        if (first)
        {
            TensorPrimitives.Multiply(g, g, squares);
            TensorPrimitives.Multiply(g, scale, total);
            TensorPrimitives.Add(total, 0f, total);
        }
        else
        {
            TensorPrimitives.MultiplyAdd(g, g, squares, squares);
            TensorPrimitives.MultiplyAdd(g, scale, total, total);
        }
    }
}
