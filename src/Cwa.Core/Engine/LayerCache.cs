using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>Activations of one transformer block that its backward pass needs.</summary>
internal sealed class LayerCache<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly T[] XIn, Xn1, R1, Q, K, V, Probs, Att, XMid, Xn2, R2, Gate, Up, H;

    /// <param name="n">rows (tokens) it can hold</param>
    /// <param name="probs">attention probabilities it can hold (batch x heads x seqLen x seqLen)</param>
    public LayerCache(int n, int probs, int dim, int qDim, int kvDim, int ffn)
    {
        XIn = new T[n * dim]; Xn1 = new T[n * dim]; R1 = new T[n];
        Q = new T[n * qDim]; K = new T[n * kvDim]; V = new T[n * kvDim];
        Probs = new T[probs];
        Att = new T[n * qDim]; XMid = new T[n * dim]; Xn2 = new T[n * dim]; R2 = new T[n];
        Gate = new T[n * ffn]; Up = new T[n * ffn]; H = new T[n * ffn];
    }
}
