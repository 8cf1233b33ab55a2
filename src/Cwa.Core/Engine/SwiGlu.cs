using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>
/// h = silu(gate) * up, silu(g) = g * sigmoid(g).
/// Backward: dup = dh * silu(g); dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))).
/// </summary>
internal static class SwiGlu<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static void Forward(T[] gate, T[] up, T[] h)
    {
        for (int i = 0; i < h.Length; i++)
        {
            T g = gate[i];
            h[i] = g / (T.One + T.Exp(-g)) * up[i];
        }
    }

    public static void Backward(T[] gate, T[] up, T[] dh, T[] dGate, T[] dUp)
    {
        for (int i = 0; i < dh.Length; i++)
        {
            T g = gate[i];
            T sig = T.One / (T.One + T.Exp(-g));
            dUp[i] = dh[i] * g * sig;
            dGate[i] = dh[i] * up[i] * sig * (T.One + g * (T.One - sig));
        }
    }
}
