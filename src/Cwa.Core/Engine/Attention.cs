using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// Grouped-query causal self-attention on rotated q [N, H*hd], k and v [N, KvH*hd]. Sequence b occupies rows
/// rowStart[b] .. rowStart[b] + Lengths[b] (packed real rows), or b*S .. in the padded layout, where padding sits
/// on the right: with a causal mask real tokens never see it, and padding rows get zero output.
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

    // Causal structure in blocks of query (or key) rows: a row block only needs the keys (or queries) on its side
    // of the diagonal, so every product does about half the work of the full len x len one.
    private const int RowBlock = 64;

    /// <summary>
    /// One head's rows of a [N, heads*hd] tensor copied into a contiguous [len, hd] block. The strided originals
    /// (a row every heads*hd floats, often a multiple of 1 KB) alias in L1 and made the small products 2-3x slower.
    /// </summary>
    private void Gather(T[] src, int offset, int stride, int len, T[] dst)
    {
        for (int t = 0; t < len; t++) Array.Copy(src, offset + t * stride, dst, t * _hd, _hd);
    }

    private void Scatter(T[] src, int len, T[] dst, int offset, int stride)
    {
        for (int t = 0; t < len; t++) Array.Copy(src, t * _hd, dst, offset + t * stride, _hd);
    }

    /// <summary>probs [B, H, S, S] are kept for backward; output [N, H*hd].</summary>
    /// <param name="rowStart">first row of each sequence in q/k/v/output (null: b * seqLen, the padded layout)</param>
    public void Forward(T[] q, T[] k, T[] v, T[] probs, T[] output, int batch, int seqLen, int[] lengths, int[]? rowStart = null)
    {
        int qs = _heads * _hd, ks = _kvHeads * _hd, group = _heads / _kvHeads;
        Array.Clear(output);
        Gemm.ParallelFor(batch * _heads, _threads, task =>
        {
            int b = task / _heads, h = task % _heads, kvh = h / group;
            int len = lengths[b];
            if (len <= 0) return;
            int pOff = (b * _heads + h) * seqLen * seqLen, row0 = rowStart?[b] ?? b * seqLen;
            int qOff = row0 * qs + h * _hd, kOff = row0 * ks + kvh * _hd;
            var pool = ArrayPool<T>.Shared;
            T[] qh = pool.Rent(len * _hd), kh = pool.Rent(len * _hd), vh = pool.Rent(len * _hd);
            Gather(q, qOff, qs, len, qh);
            Gather(k, kOff, ks, len, kh);
            Gather(v, kOff, ks, len, vh);
            for (int r0 = 0; r0 < len; r0 += RowBlock)
            {
                int r1 = Math.Min(len, r0 + RowBlock);
                Gemm.Compute(false, true, r1 - r0, r1, _hd, _scale, qh, r0 * _hd, _hd, kh, 0, _hd, T.Zero, probs, pOff + r0 * seqLen, seqLen);
            }
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
            // The output block reuses qh, which the scores no longer need.
            for (int r0 = 0; r0 < len; r0 += RowBlock)
            {
                int r1 = Math.Min(len, r0 + RowBlock);
                Gemm.Compute(false, false, r1 - r0, _hd, r1, T.One, probs, pOff + r0 * seqLen, seqLen, vh, 0, _hd, T.Zero, qh, r0 * _hd, _hd);
            }
            Scatter(qh, len, output, qOff, qs);
            pool.Return(qh);
            pool.Return(kh);
            pool.Return(vh);
        });
    }

    /// <summary>Writes dq (overwrite), dk and dv (overwrite) from dOut.</summary>
    public void Backward(T[] q, T[] k, T[] v, T[] probs, T[] dOut, T[] dq, T[] dk, T[] dv, int batch, int seqLen, int[] lengths, int[]? rowStart = null)
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
            var pool = ArrayPool<T>.Shared;
            int block = len * _hd;
            T[] dp = pool.Rent(len * len), kh = pool.Rent(block), vh = pool.Rent(block), qh = pool.Rent(block), doh = pool.Rent(block);
            T[] dqh = pool.Rent(block), dkh = pool.Rent(block), dvh = pool.Rent(block);
            Array.Clear(dkh, 0, block);
            Array.Clear(dvh, 0, block);
            int row0 = rowStart?[b] ?? b * seqLen;
            int kOff = row0 * ks + kvh * _hd;
            Gather(k, kOff, ks, len, kh);
            Gather(v, kOff, ks, len, vh);
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
            {
                int pOff = (b * _heads + h) * seqLen * seqLen;
                int qOff = row0 * qs + h * _hd;
                Gather(q, qOff, qs, len, qh);
                Gather(dOut, qOff, qs, len, doh);
                for (int r0 = 0; r0 < len; r0 += RowBlock)
                {
                    int r1 = Math.Min(len, r0 + RowBlock);
                    // dP[r0:r1, :r1] = dO V^T;  dV[r0:r1] += P[r0:, r0:r1]^T dO[r0:]
                    Gemm.Compute(false, true, r1 - r0, r1, _hd, T.One, doh, r0 * _hd, _hd, vh, 0, _hd, T.Zero, dp, r0 * len, len);
                    Gemm.Compute(true, false, r1 - r0, _hd, len - r0, T.One, probs, pOff + r0 * seqLen + r0, seqLen, doh, r0 * _hd, _hd, T.One, dvh, r0 * _hd, _hd);
                }
                for (int t = 0; t < len; t++)
                {
                    var p = probs.AsSpan(pOff + t * seqLen, t + 1);
                    var d = dp.AsSpan(t * len, len);
                    var live = d[..(t + 1)];
                    T dot = TensorPrimitives.Dot<T>(p, live);
                    TensorPrimitives.Subtract(live, dot, live);
                    TensorPrimitives.Multiply(live, p, live);
                    d[(t + 1)..].Clear();
                }
                for (int r0 = 0; r0 < len; r0 += RowBlock)
                {
                    int r1 = Math.Min(len, r0 + RowBlock);
                    // dQ[r0:r1] = c dS[r0:r1, :r1] K;  dK[r0:r1] += c dS[r0:, r0:r1]^T Q[r0:]
                    Gemm.Compute(false, false, r1 - r0, _hd, r1, _scale, dp, r0 * len, len, kh, 0, _hd, T.Zero, dqh, r0 * _hd, _hd);
                    Gemm.Compute(true, false, r1 - r0, _hd, len - r0, _scale, dp, r0 * len + r0, len, qh, r0 * _hd, _hd, T.One, dkh, r0 * _hd, _hd);
                }
                Scatter(dqh, len, dq, qOff, qs);
            }
            Scatter(dkh, len, dk, kOff, ks);
            Scatter(dvh, len, dv, kOff, ks);
            foreach (var a in new[] { dp, kh, vh, qh, doh, dqh, dkh, dvh }) pool.Return(a);
        });
    }
}
