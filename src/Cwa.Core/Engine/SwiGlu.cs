using System.Numerics;
using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// h = silu(gate) * up, silu(g) = g * sigmoid(g).
/// Backward: dup = dh * silu(g); dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))).
/// Elementwise, so split into fixed chunks across threads (each element owned by one chunk: deterministic), each
/// chunk a few vectorised passes over L1-sized blocks.
/// </summary>
internal static class SwiGlu<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int Chunk = 1 << 14;
    private const int Block = 1024;

    /// <summary>The first count elements (buffers may be larger than the rows in use).</summary>
    public static void Forward(T[] gate, T[] up, T[] h, int threads, int count = -1)
    {
        int total = count < 0 ? h.Length : count;
        Gemm.ParallelFor((total + Chunk - 1) / Chunk, threads, c =>
        {
            Span<T> sig = stackalloc T[Block];
            for (int i = c * Chunk, end = Math.Min(total, (c + 1) * Chunk); i < end; i += Block)
            {
                int len = Math.Min(Block, end - i);
                var g = gate.AsSpan(i, len);
                var s = sig[..len];
                var o = h.AsSpan(i, len);
                TensorPrimitives.Sigmoid<T>(g, s);
                TensorPrimitives.Multiply<T>(g, s, o);
                TensorPrimitives.Multiply<T>(o, up.AsSpan(i, len), o);
            }
        });
    }

    public static void Backward(T[] gate, T[] up, T[] dh, T[] dGate, T[] dUp, int threads, int count = -1)
    {
        int total = count < 0 ? dh.Length : count;
        Gemm.ParallelFor((total + Chunk - 1) / Chunk, threads, c =>
        {
            Span<T> sig = stackalloc T[Block];
            Span<T> tmp = stackalloc T[Block];
            for (int i = c * Chunk, end = Math.Min(total, (c + 1) * Chunk); i < end; i += Block)
            {
                int len = Math.Min(Block, end - i);
                var g = gate.AsSpan(i, len);
                var d = dh.AsSpan(i, len);
                var s = sig[..len];
                var t = tmp[..len];
                TensorPrimitives.Sigmoid<T>(g, s);
                // dUp = dh * g * sig
                var du = dUp.AsSpan(i, len);
                TensorPrimitives.Multiply<T>(d, g, du);
                TensorPrimitives.Multiply<T>(du, s, du);
                // dGate = dh * up * sig * (1 + g * (1 - sig))
                TensorPrimitives.Subtract<T>(T.One, s, t);
                TensorPrimitives.MultiplyAdd<T>(g, t, T.One, t);
                TensorPrimitives.Multiply<T>(t, s, t);
                var dg = dGate.AsSpan(i, len);
                TensorPrimitives.Multiply<T>(d, up.AsSpan(i, len), dg);
                TensorPrimitives.Multiply<T>(dg, t, dg);
            }
        });
    }
}
