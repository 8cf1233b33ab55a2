using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// One group per row: the group's threads stride over the row (coalesced on a GPU) and combine partial results
/// with <see cref="GroupReduce"/>'s shared-memory trees. Group sizes are powers of two up to <see cref="MaxGroup"/>.
/// </summary>
public static class RowKernels
{
    public const int MaxGroup = GroupReduce.MaxGroup;

    /// <summary>y = w * x * r, r = 1/sqrt(mean(x^2) + eps) kept in rinv for the backward pass.</summary>
    public static void RmsNormForward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, ArrayView<float> rinv, int dim, float eps)
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup);
        int row = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long o = (long)row * dim;
        float ss = 0;
        for (int j = t; j < dim; j += g) ss += x[o + j] * x[o + j];
        ss = GroupReduce.Sum(sh, ss);
        float r = 1f / MathF.Sqrt(ss / dim + eps);
        if (t == 0) rinv[row] = r;
        for (int j = t; j < dim; j += g) y[o + j] = x[o + j] * r * w[j];
    }

    /// <summary>With g = dy * w: dx += r * g - x * r^3 * (g . x) / D. The weight gradient is a separate column kernel.</summary>
    public static void RmsNormBackward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> rinv, ArrayView<float> dy, ArrayView<float> dx, int dim)
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup);
        int row = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long o = (long)row * dim;
        float dot = 0;
        for (int j = t; j < dim; j += g) dot += dy[o + j] * w[j] * x[o + j];
        dot = GroupReduce.Sum(sh, dot);
        float r = rinv[row];
        float coef = r * r * r * dot / dim;
        for (int j = t; j < dim; j += g) dx[o + j] += r * (dy[o + j] * w[j]) - x[o + j] * coef;
    }

    /// <summary>
    /// Row (b, h, t) of a [B, H, S, S] block: how many leading columns the causal mask keeps (t + 1 when t is a real
    /// position of sequence b, else 0); the group zeroes the rest of the row at offset o.
    /// </summary>
    private static int ClearMasked(ArrayView<float> x, long o, int row, ArrayView<int> lengths, int seqLen, int heads)
    {
        int pos = row % seqLen, b = row / (heads * seqLen);
        int valid = pos < lengths[b] ? pos + 1 : 0;
        for (int j = valid + Group.IdxX; j < seqLen; j += Group.DimX) x[o + j] = 0;
        return valid;
    }

    /// <summary>
    /// Causal softmax over scores [B, H, S, S] (already scaled): row (b, h, t) keeps columns 0..t when t is a real
    /// position of sequence b, everything else becomes 0 (padding rows give zero attention output).
    /// </summary>
    public static void CausalSoftmax(ArrayView<float> scores, ArrayView<int> lengths, int seqLen, int heads)
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup);
        int row = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long o = (long)row * seqLen;
        int valid = ClearMasked(scores, o, row, lengths, seqLen, heads);
        if (valid == 0) return;
        float m = float.NegativeInfinity;
        for (int j = t; j < valid; j += g) m = MathF.Max(m, scores[o + j]);
        m = GroupReduce.Max(sh, m);
        float sum = 0;
        for (int j = t; j < valid; j += g)
        {
            float e = MathF.Exp(scores[o + j] - m);
            scores[o + j] = e;
            sum += e;
        }
        sum = GroupReduce.Sum(sh, sum);
        for (int j = t; j < valid; j += g) scores[o + j] /= sum;
    }

    /// <summary>Softmax backward in place on dp [B, H, S, S]: dS = P * (dP - rowsum(dP * P)), zero outside the causal mask.</summary>
    public static void SoftmaxBackward(ArrayView<float> probs, ArrayView<float> dp, ArrayView<int> lengths, int seqLen, int heads)
    {
        var sh = SharedMemory.Allocate<float>(MaxGroup);
        int row = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long o = (long)row * seqLen;
        int valid = ClearMasked(dp, o, row, lengths, seqLen, heads);
        if (valid == 0) return;
        float dot = 0;
        for (int j = t; j < valid; j += g) dot += probs[o + j] * dp[o + j];
        dot = GroupReduce.Sum(sh, dot);
        for (int j = t; j < valid; j += g) dp[o + j] = probs[o + j] * (dp[o + j] - dot);
    }

    /// <summary>
    /// Fused softmax cross-entropy per row of logits [rows, vocab]: nll = logsumexp(z) - z[target], hit = 1 when
    /// the first arg-max is the target. With grad != 0 the row is overwritten with (softmax - onehot) * scale.
    /// </summary>
    public static void CrossEntropy(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> nll, ArrayView<int> hit, int vocab, float scale, int grad)
    {
        var shv = SharedMemory.Allocate<float>(MaxGroup);
        var shi = SharedMemory.Allocate<int>(MaxGroup);
        int row = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long o = (long)row * vocab;
        var best = new GroupReduce.ArgMaxValue { Value = float.NegativeInfinity, Index = int.MaxValue };
        for (int j = t; j < vocab; j += g)
            if (logits[o + j] > best.Value)
            {
                best.Value = logits[o + j];
                best.Index = j;
            }
        best = GroupReduce.ArgMax(shv, shi, best);
        int target = targets[row];
        float zt = logits[o + target];
        float m = best.Value;
        float sum = 0;
        for (int j = t; j < vocab; j += g) sum += MathF.Exp(logits[o + j] - m);
        sum = GroupReduce.Sum(shv, sum);
        if (t == 0)
        {
            nll[row] = MathF.Log(sum) + m - zt;
            hit[row] = best.Index == target ? 1 : 0;
        }
        if (grad == 0) return;
        float f = scale / sum;
        for (int j = t; j < vocab; j += g)
        {
            float v = MathF.Exp(logits[o + j] - m) * f;
            logits[o + j] = j == target ? v - scale : v;
        }
    }
}
