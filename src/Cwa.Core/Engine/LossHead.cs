using System.Numerics;
using System.Numerics.Tensors;

namespace Cwa.Core.Engine;

/// <summary>
/// lm_head + next-token cross-entropy over target rows only, in row chunks so [tokens, vocab] logits are never
/// held at once. When gradients are wanted the backward is fused per chunk: dlogits = (softmax - onehot) * s with
/// s = scale / targets, dW_head += dlogits^T x, dx = dlogits W_head.
/// </summary>
internal sealed class LossHead<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private const long ChunkElements = 1L << 24;
    private readonly int _threads;
    private T[]? _xs, _logits, _dxs;
    private double[]? _nll;
    private bool[]? _hit;

    private static TA[] Buffer<TA>(ref TA[]? field, int length) => field is { } f && f.Length >= length ? f : field = new TA[length];

    public LossHead(int threads) => _threads = threads;

    public readonly record struct Result(double SumNll, long Targets, long Correct);

    /// <param name="rows">rows of x that predict a next token, and targets the tokens they predict</param>
    /// <param name="x">normed hidden states [N, D]</param>
    /// <param name="dx">if not null, receives d(loss*scale)/dx for every row (zeros for non-target rows)</param>
    public Result Run(int[] rows, int[] targets, T[] x, int dim, T[] headWeight, int vocab, T[]? dHead, T[]? dx, double scale)
    {
        if (dx != null) Array.Clear(dx);
        int n = rows.Length;
        if (n == 0) return new Result(0, 0, 0);
        int chunk = (int)Math.Max(1, Math.Min(n, ChunkElements / vocab));
        // Reused across calls (a logits chunk is up to 64 MB); every element used below is written first.
        var xs = Buffer(ref _xs, chunk * dim);
        var logits = Buffer(ref _logits, chunk * vocab);
        var dxs = dx != null ? Buffer(ref _dxs, chunk * dim) : null;
        var nll = Buffer(ref _nll, chunk);
        var hit = Buffer(ref _hit, chunk);
        T s = T.CreateTruncating(scale / n);
        double sum = 0;
        long correct = 0;
        for (int c0 = 0; c0 < n; c0 += chunk)
        {
            int cn = Math.Min(chunk, n - c0);
            for (int i = 0; i < cn; i++)
                Array.Copy(x, rows[c0 + i] * dim, xs, i * dim, dim);
            Gemm.Compute(false, true, cn, vocab, dim, T.One, xs, 0, dim, headWeight, 0, dim, T.Zero, logits, 0, vocab);
            Gemm.ParallelFor(cn, _threads, i =>
            {
                var z = logits.AsSpan(i * vocab, vocab);
                int target = targets[c0 + i];
                int arg = TensorPrimitives.IndexOfMax<T>(z);
                T max = z[arg];
                T zt = z[target];
                TensorPrimitives.Subtract(z, max, z);
                TensorPrimitives.Exp<T>(z, z);
                T sumExp = TensorPrimitives.Sum<T>(z);
                nll[i] = double.CreateTruncating(T.Log(sumExp) + max - zt);
                hit[i] = arg == target;
                if (dxs != null)
                {
                    TensorPrimitives.Multiply(z, s / sumExp, z);
                    z[target] -= s;
                }
            });
            for (int i = 0; i < cn; i++)
            {
                sum += nll[i];
                if (hit[i]) correct++;
            }
            if (dxs != null)
            {
                Gemm.Compute(true, false, vocab, dim, cn, T.One, logits, 0, vocab, xs, 0, dim, T.One, dHead!, 0, dim);
                Gemm.Compute(false, false, cn, dim, vocab, T.One, logits, 0, vocab, headWeight, 0, dim, T.Zero, dxs, 0, dim);
                for (int i = 0; i < cn; i++)
                    Array.Copy(dxs, i * dim, dx!, rows[c0 + i] * dim, dim);
            }
        }
        return new Result(sum, n, correct);
    }
}
