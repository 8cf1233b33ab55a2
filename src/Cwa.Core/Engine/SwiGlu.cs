using System.Numerics;

namespace Cwa.Core.Engine;

/// <summary>
/// h = silu(gate) * up, silu(g) = g * sigmoid(g).
/// Backward: dup = dh * silu(g); dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))).
/// Elementwise, so split into fixed chunks across threads (each element owned by one chunk: deterministic).
/// </summary>
internal static class SwiGlu<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int Chunk = 1 << 14;

    public static void Forward(T[] gate, T[] up, T[] h, int threads) =>
        Gemm.ParallelFor((h.Length + Chunk - 1) / Chunk, threads, c =>
        {
            for (int i = c * Chunk; i < Math.Min(h.Length, (c + 1) * Chunk); i++)
            {
                T g = gate[i];
                h[i] = g / (T.One + T.Exp(-g)) * up[i];
            }
        });

    public static void Backward(T[] gate, T[] up, T[] dh, T[] dGate, T[] dUp, int threads) =>
        Gemm.ParallelFor((dh.Length + Chunk - 1) / Chunk, threads, c =>
        {
            for (int i = c * Chunk; i < Math.Min(dh.Length, (c + 1) * Chunk); i++)
            {
                T g = gate[i];
                T sig = T.One / (T.One + T.Exp(-g));
                dUp[i] = dh[i] * g * sig;
                dGate[i] = dh[i] * up[i] * sig * (T.One + g * (T.One - sig));
            }
        });
}
