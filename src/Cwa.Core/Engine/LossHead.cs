using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Cwa.Core.Engine;

/// <summary>
/// lm_head + next-token cross-entropy over target rows only, in tiles of target rows x vocabulary rows, so neither
/// [tokens, vocab] logits nor (when streaming) the whole lm_head are ever held. Pass 1 walks the vocabulary chunk by
/// chunk keeping each row's running max and rescaled sum of exponentials (online softmax), its arg max and its
/// target logit. With gradients, pass 2 takes each tile's logits again (kept from pass 1 when all of them fit in
/// <see cref="KeptLogitsLimit"/> values, else recomputed: the same product either way) and fuses the backward per vocabulary chunk:
/// dlogits = (softmax - onehot) * s with s = scale / targets, dW_head[chunk] += dlogits^T x, dx += dlogits W_head[chunk].
/// Each chunk's weight gradient is complete for the batch when its pass-2 loop ends (what per-batch Fisher sums need;
/// with the chunk's rows in one tile its product can fold them into those sums directly, <see cref="IHeadGradient{T}.Fold"/>).
/// </summary>
internal sealed class LossHead<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly long _tileElements;
    private readonly int _vocabChunk;
    private readonly int _threads;
    private readonly long _keptLogits;
    private T[]? _xs, _logits, _dxt, _max, _sum, _lse, _zt, _kept;
    private int[]? _arg;

    private static TA[] Buffer<TA>(ref TA[]? field, int length) => field is { } f && f.Length >= length ? f : field = new TA[length];

    /// <param name="vocabChunk">vocabulary rows per chunk (tests use tiny chunks to cover the chunk seams)</param>
    /// <param name="tileElements">bound on one logits tile, target rows x vocabulary chunk</param>
    /// <param name="keptLogits">most logits kept from pass 1 for pass 2 (tests pass 0 to cover recomputing)</param>
    public LossHead(int threads, int vocabChunk = 4096, long tileElements = 1L << 24, long keptLogits = KeptLogitsLimit)
    {
        _keptLogits = keptLogits;
        _threads = threads;
        _vocabChunk = vocabChunk;
        _tileElements = tileElements;
    }

    public readonly record struct Result(double SumNll, long Targets, long Correct);

    /// <summary>
    /// Most logits (target rows x vocabulary) a backward keeps from pass 1 instead of recomputing them in pass 2: a
    /// quarter of the head's products (at 8B, 712 rows x 128,256 = 365 MB). Larger batches recompute.
    /// </summary>
    public const long KeptLogitsLimit = 1L << 27;

    /// <summary>Bytes of kept logits a backward over n target rows holds.</summary>
    public static long KeptLogitsBytes(long n, int vocab) => n * vocab <= KeptLogitsLimit ? n * vocab * 4 : 0;

    /// <param name="rows">rows of x that predict a next token, and targets the tokens they predict</param>
    /// <param name="x">normed hidden states [N, D]</param>
    /// <param name="head">lm_head (or the tied embedding) [vocab, D]</param>
    /// <param name="dHead">where lm_head's gradient accumulates (null: forward only)</param>
    /// <param name="dx">if not null, receives d(loss*scale)/dx for every row (zeros for non-target rows)</param>
    /// <param name="backwardIf">decides from the loss whether the backward runs (a batch with a non-finite loss must not touch the sums)</param>
    public Result Run(int[] rows, int[] targets, T[] x, int dim, IMatrixRows<T> head, int vocab, IHeadGradient<T>? dHead, T[]? dx, double scale,
        Func<Result, bool>? backwardIf = null)
    {
        if (dx != null) Array.Clear(dx);
        int n = rows.Length;
        if (n == 0) return new Result(0, 0, 0);
        int vChunk = Math.Min(vocab, _vocabChunk);
        int rChunk = (int)Math.Max(1, Math.Min(n, _tileElements / vChunk));
        // Reused across calls; every element used below is written first.
        var xs = Buffer(ref _xs, rChunk * dim);
        var logits = Buffer(ref _logits, rChunk * vChunk);
        var max = Buffer(ref _max, n);
        var sum = Buffer(ref _sum, n);
        var zt = Buffer(ref _zt, n);
        var arg = Buffer(ref _arg, n);
        // Kept logits are laid out chunk by chunk, each chunk's tiles in row order: tile (v0, r0) starts at v0 * n + r0 * vn.
        bool keep = dHead != null && dx != null && (long)n * vocab <= _keptLogits;
        var kept = keep ? Buffer(ref _kept, n * vocab) : null;

        for (int v0 = 0; v0 < vocab; v0 += vChunk)
        {
            int vn = Math.Min(vChunk, vocab - v0);
            var (w, wOff) = head.Rows(v0, vn);
            for (int r0 = 0; r0 < n; r0 += rChunk)
            {
                int rn = Math.Min(rChunk, n - r0);
                // Without keeping, the tile's logits are turned into exponentials in place.
                var (src, srcOff) = keep ? (kept!, v0 * n + r0 * vn) : (logits, 0);
                Logits(rows, r0, rn, x, dim, xs, w, wOff, vn, src, srcOff);
                Gemm.ParallelFor(rn, _threads, i =>
                {
                    int row = r0 + i;
                    var z = src.AsSpan(srcOff + i * vn, vn);
                    var e = logits.AsSpan(i * vn, vn);
                    int a = TensorPrimitives.IndexOfMax<T>(z);
                    T m = z[a];
                    int t = targets[row] - v0;
                    if ((uint)t < (uint)vn) zt[row] = z[t];
                    // The first arg max over the whole vocabulary: a later chunk wins only when strictly larger.
                    if (v0 == 0 || m > max[row]) arg[row] = v0 + a;
                    // The running sum is rescaled to the new max before this chunk's terms are added (NaN propagates).
                    T shift = v0 == 0 ? m : T.Max(m, max[row]);
                    TensorPrimitives.Subtract(z, shift, e);
                    TensorPrimitives.Exp<T>(e, e);
                    T chunkSum = TensorPrimitives.Sum<T>(e);
                    sum[row] = v0 == 0 ? chunkSum : sum[row] * T.Exp(max[row] - shift) + chunkSum;
                    max[row] = shift;
                });
            }
        }
        var lse = Buffer(ref _lse, n);
        double total = 0;
        long correct = 0;
        for (int i = 0; i < n; i++)
        {
            lse[i] = max[i] + T.Log(sum[i]);
            total += double.CreateTruncating(lse[i] - zt[i]);
            if (arg[i] == targets[i]) correct++;
        }
        var forward = new Result(total, n, correct);
        if (dHead == null || dx == null || backwardIf?.Invoke(forward) == false) return forward;

        T s = T.CreateTruncating(scale / n);
        var dxt = Buffer(ref _dxt, n * dim);
        for (int v0 = 0; v0 < vocab; v0 += vChunk)
        {
            int vn = Math.Min(vChunk, vocab - v0);
            var (w, wOff) = head.Rows(v0, vn);
            // A chunk whose rows come in one tile may go straight into per-batch sums (no gradient chunk is written).
            var fold = typeof(T) == typeof(float) && rChunk >= n ? dHead.Fold(v0, vn, n) : null;
            var (g, gOff) = fold == null ? dHead.Rows(v0, vn) : ([], 0);
            for (int r0 = 0; r0 < n; r0 += rChunk)
            {
                int rn = Math.Min(rChunk, n - r0);
                var (src, srcOff) = keep ? (kept!, v0 * n + r0 * vn) : (logits, 0);
                if (keep) GatherRows(rows, r0, rn, x, dim, xs);
                else Logits(rows, r0, rn, x, dim, xs, w, wOff, vn, logits, 0);
                Gemm.ParallelFor(rn, _threads, i =>
                {
                    int row = r0 + i;
                    var z = logits.AsSpan(i * vn, vn);
                    TensorPrimitives.Subtract(src.AsSpan(srcOff + i * vn, vn), lse[row], z);
                    TensorPrimitives.Exp<T>(z, z);
                    TensorPrimitives.Multiply(z, s, z);
                    int t = targets[row] - v0;
                    if ((uint)t < (uint)vn) z[t] -= s;
                });
                if (fold != null)
                    Sgemm.Compute(true, false, vn, dim, rn, 1f, Unsafe.As<float[]>(logits), 0, vn, Unsafe.As<float[]>(xs), 0, dim, 0f, [], v0 * dim, dim, fold);
                else
                    Gemm.Compute(true, false, vn, dim, rn, T.One, logits, 0, vn, xs, 0, dim, T.One, g, gOff, dim);
                Gemm.Compute(false, false, rn, dim, vn, T.One, logits, 0, vn, w, wOff, dim, v0 == 0 ? T.Zero : T.One, dxt, r0 * dim, dim);
            }
            dHead.Done(v0, vn);
        }
        for (int i = 0; i < n; i++)
            Array.Copy(dxt, i * dim, dx, rows[i] * dim, dim);
        return forward;
    }

    /// <summary>logits[off.., rn x vn] = x[rows r0 .. r0+rn] W[chunk]^T, gathering the target rows into xs first.</summary>
    private static void Logits(int[] rows, int r0, int rn, T[] x, int dim, T[] xs, T[] w, int wOff, int vn, T[] logits, int off)
    {
        GatherRows(rows, r0, rn, x, dim, xs);
        Gemm.Compute(false, true, rn, vn, dim, T.One, xs, 0, dim, w, wOff, dim, T.Zero, logits, off, vn);
    }

    private static void GatherRows(int[] rows, int r0, int rn, T[] x, int dim, T[] xs)
    {
        for (int i = 0; i < rn; i++)
            Array.Copy(x, rows[r0 + i] * dim, xs, i * dim, dim);
    }
}

/// <summary>Rows of a [rows, dim] matrix as the engine reads them: resident, or widened on demand while streaming.</summary>
internal interface IMatrixRows<T>
{
    /// <summary>An array holding rows [first, first + count) contiguously from Offset; valid until the next call.</summary>
    (T[] Array, int Offset) Rows(int first, int count);
}

/// <summary>Where the lm_head gradient of one batch accumulates, chunk by chunk of vocabulary rows.</summary>
internal interface IHeadGradient<T>
{
    /// <summary>The array the gradient of rows [first, first + count) accumulates into (beta = 1).</summary>
    (T[] Array, int Offset) Rows(int first, int count);
    /// <summary>
    /// Instead of <see cref="Rows"/>: a fold that takes rows [first, first + count) of this batch's gradient, a product of
    /// the given depth, straight into running sums at the rows' flat indices (with C empty), or null where it cannot.
    /// </summary>
    GemmFold? Fold(int first, int count, int depth);
    /// <summary>Those rows have received this batch's whole contribution.</summary>
    void Done(int first, int count);
}

/// <summary>A resident row-major matrix, and the gradient accumulating into a resident array: the in-memory case.</summary>
internal sealed class ResidentRows<T>(T[] data, int dim) : IMatrixRows<T>, IHeadGradient<T>
{
    public (T[] Array, int Offset) Rows(int first, int count) => (data, first * dim);
    public GemmFold? Fold(int first, int count, int depth) => null;
    public void Done(int first, int count) { }
}
