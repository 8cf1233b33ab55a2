using ILGPU;

namespace Cwa.Cuda;

/// <summary>
/// Device kernels for the engine's non-GEMM ops, mirroring the CPU backend's math (same formulas, fp32). Matrix
/// products go to cuBLAS on a GPU; everything here is elementwise or per-row, one thread per element or row.
/// </summary>
public static class Kernels
{
    /// <summary>h = silu(gate) * up.</summary>
    public static void SwiGluForward(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> h)
    {
        float g = gate[i];
        h[i] = g / (1f + MathF.Exp(-g)) * up[i];
    }

    /// <summary>dup = dh * silu(g); dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))).</summary>
    public static void SwiGluBackward(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dh, ArrayView<float> dGate, ArrayView<float> dUp)
    {
        float g = gate[i];
        float sig = 1f / (1f + MathF.Exp(-g));
        dUp[i] = dh[i] * g * sig;
        dGate[i] = dh[i] * up[i] * sig * (1f + g * (1f - sig));
    }

    /// <summary>One row per thread: y = w * x / sqrt(mean(x^2) + eps); rinv keeps 1/rms for the backward pass.</summary>
    public static void RmsNormForward(Index1D row, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, ArrayView<float> rinv, int dim, float eps)
    {
        long o = (long)(int)row * dim;
        float ss = 0;
        for (int j = 0; j < dim; j++) ss += x[o + j] * x[o + j];
        float r = 1f / MathF.Sqrt(ss / dim + eps);
        rinv[row] = r;
        for (int j = 0; j < dim; j++) y[o + j] = x[o + j] * r * w[j];
    }

    /// <summary>
    /// RMSNorm backward, one row per thread: with g = dy * w, dx += r * g - x * r^3 * (g . x) / D. The weight
    /// gradient is a column sum over rows and is reduced by <see cref="RmsNormWeightGrad"/> (one thread per column,
    /// rows in order, so it is deterministic).
    /// </summary>
    public static void RmsNormBackward(Index1D row, ArrayView<float> x, ArrayView<float> w, ArrayView<float> rinv, ArrayView<float> dy, ArrayView<float> dx, int dim)
    {
        long o = (long)(int)row * dim;
        float r = rinv[row], dot = 0;
        for (int j = 0; j < dim; j++) dot += dy[o + j] * w[j] * x[o + j];
        float coef = r * r * r * dot / dim;
        for (int j = 0; j < dim; j++) dx[o + j] += r * dy[o + j] * w[j] - x[o + j] * coef;
    }

    /// <summary>dw[j] += sum over rows of dy * x * rinv.</summary>
    public static void RmsNormWeightGrad(Index1D col, ArrayView<float> x, ArrayView<float> rinv, ArrayView<float> dy, ArrayView<float> dw, int rows, int dim)
    {
        float s = 0;
        for (int r = 0; r < rows; r++) s += dy[(long)r * dim + col] * x[(long)r * dim + col] * rinv[r];
        dw[col] += s;
    }

    /// <summary>
    /// Causal grouped-query attention forward, one (sequence, head, query position) per thread, with a numerically
    /// stable two-pass softmax. q [N, H*hd], k/v [N, KvH*hd], out [N, H*hd]; positions at or past the sequence's
    /// length produce zeros (right padding is never attended to).
    /// </summary>
    public static void AttentionForward(Index1D idx, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<int> lengths, int seqLen, int heads, int kvHeads, int hd, float scale)
    {
        int t = idx % seqLen;
        int bh = idx / seqLen;
        int h = bh % heads, b = bh / heads;
        int kvh = h / (heads / kvHeads);
        int qs = heads * hd, ks = kvHeads * hd;
        long qo = ((long)b * seqLen + t) * qs + h * hd;
        if (t >= lengths[b])
        {
            for (int d = 0; d < hd; d++) output[qo + d] = 0;
            return;
        }
        float max = float.NegativeInfinity;
        for (int u = 0; u <= t; u++)
        {
            long ko = ((long)b * seqLen + u) * ks + kvh * hd;
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[qo + d] * k[ko + d];
            max = MathF.Max(max, s * scale);
        }
        float sum = 0;
        for (int d = 0; d < hd; d++) output[qo + d] = 0;
        for (int u = 0; u <= t; u++)
        {
            long ko = ((long)b * seqLen + u) * ks + kvh * hd;
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[qo + d] * k[ko + d];
            float p = MathF.Exp(s * scale - max);
            sum += p;
            for (int d = 0; d < hd; d++) output[qo + d] += p * v[ko + d];
        }
        for (int d = 0; d < hd; d++) output[qo + d] /= sum;
    }

    /// <summary>
    /// Rotate-half RoPE on x [rows, heads * 2 * half], one (row, head, pair) per thread; tables [positions, half];
    /// position = row % seqLen. inverse = 1 applies the transpose (the backward pass).
    /// </summary>
    public static void Rope(Index1D idx, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, int seqLen, int heads, int half, int inverse)
    {
        int i = idx % half;
        int rh = idx / half;
        int h = rh % heads, r = rh / heads;
        int pos = r % seqLen;
        long o = (long)r * heads * 2 * half + h * 2 * half;
        float c = cos[pos * half + i], s = inverse != 0 ? -sin[pos * half + i] : sin[pos * half + i];
        float a = x[o + i], b = x[o + i + half];
        x[o + i] = a * c - b * s;
        x[o + i + half] = b * c + a * s;
    }

    /// <summary>
    /// Fused softmax cross-entropy, one row per thread: nll[row] = logsumexp(z) - z[target]; the row of logits is
    /// overwritten with (softmax - onehot) * scale, the gradient the lm_head backward needs.
    /// </summary>
    public static void SoftmaxCrossEntropy(Index1D row, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> nll, int vocab, float scale)
    {
        long o = (long)(int)row * vocab;
        float max = float.NegativeInfinity;
        for (int j = 0; j < vocab; j++) max = MathF.Max(max, logits[o + j]);
        float sum = 0;
        for (int j = 0; j < vocab; j++) sum += MathF.Exp(logits[o + j] - max);
        int t = targets[row];
        nll[row] = MathF.Log(sum) + max - logits[o + t];
        for (int j = 0; j < vocab; j++) logits[o + j] = MathF.Exp(logits[o + j] - max) / sum * scale;
        logits[o + t] -= scale;
    }
}
