using System.Numerics;
using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// Grouped-query causal self-attention on rotated q [N, H*hd], k and v [N, KvH*hd], N = B*S rows.
/// Only the first Lengths[b] rows of each sequence are computed: padding sits on the right, so with a causal
/// mask real tokens never see it, and padding rows get zero output.
/// Backward per (b, h): dP = dO V^T, dV += P^T dO, dS = P * (dP - rowsum(dP * P)), dQ = c dS K, dK += c dS^T Q.
/// Work is split by (sequence, kv head) so each task owns its dK/dV slice: no shared accumulation, deterministic.
/// </summary>
internal sealed class Attention<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly int _heads, _kvHeads, _hd, _threads;
    private readonly T _scale;

    public Attention(int heads, int kvHeads, int headDim, int threads)
    {
        _heads = heads; _kvHeads = kvHeads; _hd = headDim; _threads = threads;
        _scale = T.One / T.Sqrt(T.CreateTruncating(headDim));
    }

    /// <summary>probs [B, H, S, S] are kept for backward; output [N, H*hd].</summary>
    public void Forward(T[] q, T[] k, T[] v, T[] probs, T[] output, int batch, int seqLen, int[] lengths)
    {
        int qs = _heads * _hd, ks = _kvHeads * _hd, group = _heads / _kvHeads;
        Array.Clear(output);
        Gemm.ParallelFor(batch * _heads, _threads, task =>
        {
            int b = task / _heads, h = task % _heads, kvh = h / group;
            int len = lengths[b];
            if (len <= 0) return;
            int pOff = (b * _heads + h) * seqLen * seqLen;
            Gemm.Compute(false, true, len, len, _hd, _scale, q, b * seqLen * qs + h * _hd, qs, k, b * seqLen * ks + kvh * _hd, ks, T.Zero, probs, pOff, seqLen);
            for (int t = 0; t < len; t++)
            {
                var row = probs.AsSpan(pOff + t * seqLen, seqLen);
                var valid = row[..(t + 1)];
                T max = TensorPrimitives.Max<T>(valid);
                TensorPrimitives.Subtract(valid, max, valid);
                TensorPrimitives.Exp<T>(valid, valid);
                T sum = TensorPrimitives.Sum<T>(valid);
                TensorPrimitives.Divide(valid, sum, valid);
                row[(t + 1)..].Clear();
            }
            Gemm.Compute(false, false, len, _hd, len, T.One, probs, pOff, seqLen, v, b * seqLen * ks + kvh * _hd, ks, T.Zero, output, b * seqLen * qs + h * _hd, qs);
        });
    }

    /// <summary>Writes dq (overwrite), dk and dv (overwrite) from dOut.</summary>
    public void Backward(T[] q, T[] k, T[] v, T[] probs, T[] dOut, T[] dq, T[] dk, T[] dv, int batch, int seqLen, int[] lengths)
    {
        int qs = _heads * _hd, ks = _kvHeads * _hd, group = _heads / _kvHeads;
        Array.Clear(dq);
        Array.Clear(dk);
        Array.Clear(dv);
        Gemm.ParallelFor(batch * _kvHeads, _threads, task =>
        {
            int b = task / _kvHeads, kvh = task % _kvHeads;
            int len = lengths[b];
            if (len <= 0) return;
            var dp = new T[len * len];
            int kOff = b * seqLen * ks + kvh * _hd;
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
            {
                int pOff = (b * _heads + h) * seqLen * seqLen;
                int qOff = b * seqLen * qs + h * _hd;
                Gemm.Compute(false, true, len, len, _hd, T.One, dOut, qOff, qs, v, kOff, ks, T.Zero, dp, 0, len);
                Gemm.Compute(true, false, len, _hd, len, T.One, probs, pOff, seqLen, dOut, qOff, qs, T.One, dv, kOff, ks);
                for (int t = 0; t < len; t++)
                {
                    var p = probs.AsSpan(pOff + t * seqLen, t + 1);
                    var d = dp.AsSpan(t * len, len);
                    T dot = TensorPrimitives.Dot<T>(p, d[..(t + 1)]);
                    for (int j = 0; j <= t; j++) d[j] = p[j] * (d[j] - dot);
                    d[(t + 1)..].Clear();
                }
                Gemm.Compute(false, false, len, _hd, len, _scale, dp, 0, len, k, kOff, ks, T.Zero, dq, qOff, qs);
                Gemm.Compute(true, false, len, _hd, len, _scale, dp, 0, len, q, qOff, qs, T.One, dk, kOff, ks);
            }
        });
    }
}
