using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>Activations of one transformer block that its backward pass needs.</summary>
internal sealed class LayerCache<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly T[] XIn, Xn1, R1, Q, K, V, Probs, Att, XMid, Xn2, R2, Gate, Up, H;
    private readonly int _dim, _qDim, _kvDim, _ffn;

    /// <param name="n">rows (tokens) it can hold</param>
    /// <param name="probs">attention probabilities it can hold (batch x heads x seqLen x seqLen)</param>
    public LayerCache(int n, int probs, int dim, int qDim, int kvDim, int ffn)
    {
        (_dim, _qDim, _kvDim, _ffn) = (dim, qDim, kvDim, ffn);
        XIn = new T[n * dim]; Xn1 = new T[n * dim]; R1 = new T[n];
        Q = new T[n * qDim]; K = new T[n * kvDim]; V = new T[n * kvDim];
        Probs = new T[probs];
        Att = new T[n * qDim]; XMid = new T[n * dim]; Xn2 = new T[n * dim]; R2 = new T[n];
        Gate = new T[n * ffn]; Up = new T[n * ffn]; H = new T[n * ffn];
    }

    /// <summary>
    /// Values per row kept between a block's forward and its backward instead of recomputing them: the outputs of
    /// its products (q, k and v after RoPE, the residual after attention, gate, up). Everything else the backward
    /// needs follows from them and the block input by norms, attention and SwiGLU, which cost little.
    /// </summary>
    public static int KeptPerRow(Models.ModelConfig c) => c.QDim + 2 * c.KvDim + c.HiddenSize + 2 * c.IntermediateSize;

    private T[][] Kept => [Q, K, V, XMid, Gate, Up];
    private int[] KeptWidths => [_qDim, _kvDim, _kvDim, _dim, _ffn, _ffn];

    /// <summary>Writes the kept values of the first n rows to a slot (n x <see cref="KeptPerRow"/> values, field by field).</summary>
    public void SaveKept(KeptSlot slot, int n)
    {
        var (fields, widths) = (Kept, KeptWidths);
        for (int i = 0, at = 0; i < fields.Length; at += n * widths[i], i++)
            slot.Write(at, Floats(fields[i].AsSpan(0, n * widths[i])));
    }

    /// <summary>The inverse of <see cref="SaveKept"/>.</summary>
    public void LoadKept(KeptSlot slot, int n)
    {
        var (fields, widths) = (Kept, KeptWidths);
        for (int i = 0, at = 0; i < fields.Length; at += n * widths[i], i++)
            slot.Read(at, Floats(fields[i].AsSpan(0, n * widths[i])));
    }

    /// <summary>Kept values are fp32: only the float engine (the streamed one) keeps them.</summary>
    private static Span<float> Floats(Span<T> values) =>
        typeof(T) == typeof(float) ? System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(values) : throw new NotSupportedException("only fp32 activations are kept");
}
