using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// One thread per element (or per column) kernels of the device engine, mirroring the CPU backend's formulas in
/// fp32. Column sums loop over rows in order inside one thread, so they are deterministic.
/// </summary>
public static class PointwiseKernels
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
    /// One batch's gradient g folded into the running sums as the host's GradientSums folds it: total += scale * g,
    /// squares += g * g; g is zeroed for the next batch.
    /// </summary>
    public static void FoldBatch(Index1D i, ArrayView<float> g, ArrayView<float> total, ArrayView<float> squares, float scale)
    {
        float v = g[i];
        squares[i] += v * v;
        total[i] += v * scale;
        g[i] = 0f;
    }

    /// <summary>o = a + b (o may alias a or b).</summary>
    public static void Add(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> o) => o[i] = a[i] + b[i];

    /// <summary>y[r, c] += bias[c].</summary>
    public static void AddBias(Index1D i, ArrayView<float> y, ArrayView<float> bias, int cols) => y[i] += bias[i % cols];

    /// <summary>dst = src rounded to bf16 (format 0) or fp16 (format 1).</summary>
    public static void ToHalf(Index1D i, ArrayView<float> src, ArrayView<ushort> dst, int format) => dst[i] = HalfBits.FromFloat(src[i], format);

    public static void FromHalf(Index1D i, ArrayView<ushort> src, ArrayView<float> dst, int format) => dst[i] = HalfBits.ToFloat(src[i], format);

    /// <summary>dst[index[i]] = values[i] (distinct indices).</summary>
    public static void ScatterF32(Index1D i, ArrayView<long> index, ArrayView<float> values, ArrayView<float> dst) => dst[index[i]] = values[i];

    public static void ScatterHalf(Index1D i, ArrayView<long> index, ArrayView<float> values, ArrayView<ushort> dst, int format) =>
        dst[index[i]] = HalfBits.FromFloat(values[i], format);

    /// <summary>values[i] = src[index[i]] (reading a few weights or gradients back).</summary>
    public static void GatherF32(Index1D i, ArrayView<float> src, ArrayView<long> index, ArrayView<float> values) => values[i] = src[index[i]];

    public static void GatherHalf(Index1D i, ArrayView<ushort> src, ArrayView<long> index, ArrayView<float> values, int format) =>
        values[i] = HalfBits.ToFloat(src[index[i]], format);

    /// <summary>x[r, :] = table[tokens[r], :] from an fp32 table.</summary>
    public static void EmbedF32(Index1D i, ArrayView<int> tokens, ArrayView<float> table, ArrayView<float> x, int dim) =>
        x[i] = table[(long)tokens[i / dim] * dim + i % dim];

    /// <summary>x[r, :] = table[tokens[r], :] from a bf16/fp16 table.</summary>
    public static void EmbedHalf(Index1D i, ArrayView<int> tokens, ArrayView<ushort> table, ArrayView<float> x, int dim, int format) =>
        x[i] = HalfBits.ToFloat(table[(long)tokens[i / dim] * dim + i % dim], format);

    /// <summary>dst[i, :] = src[rows[i], :].</summary>
    public static void GatherRows(Index1D i, ArrayView<int> rows, ArrayView<float> src, ArrayView<float> dst, int dim) =>
        dst[i] = src[(long)rows[i / dim] * dim + i % dim];

    /// <summary>dst[rows[i], :] = src[i, :] (distinct rows).</summary>
    public static void ScatterRows(Index1D i, ArrayView<int> rows, ArrayView<float> src, ArrayView<float> dst, int dim) =>
        dst[(long)rows[i / dim] * dim + i % dim] = src[i];

    /// <summary>
    /// Column sums in two stages, so a [rows, dim] reduction has rows/chunk x dim threads instead of dim: partial
    /// sums of `chunk` rows (of x, or with rinv: of dy * x * rinv, the RMSNorm weight gradient), then
    /// <see cref="ColumnFinish"/> adds the partials in order. Fixed order, so deterministic.
    /// </summary>
    public static void ColumnPartials(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> rinv, int useNorm, ArrayView<float> partial, int rows, int dim, int chunk)
    {
        int c = i / dim, col = i % dim;
        int end = Math.Min(rows, (c + 1) * chunk);
        float s = 0;
        for (int r = c * chunk; r < end; r++)
        {
            long o = (long)r * dim + col;
            s += useNorm != 0 ? dy[o] * x[o] * rinv[r] : x[o];
        }
        partial[i] = s;
    }

    /// <summary>output[col] += sum over chunks of partial[chunk, col].</summary>
    public static void ColumnFinish(Index1D col, ArrayView<float> partial, ArrayView<float> output, int chunks, int dim)
    {
        float s = 0;
        for (int c = 0; c < chunks; c++) s += partial[(long)c * dim + col];
        output[col] += s;
    }

    /// <summary>
    /// Embedding gradient without atomics: the host groups the real rows by token (order lists them, segment u
    /// spans order[start[u] .. start[u+1])), and one thread per (token, column) adds its rows in row order.
    /// </summary>
    public static void EmbeddingGrad(Index1D i, ArrayView<int> tokens, ArrayView<int> start, ArrayView<int> order, ArrayView<float> dx, ArrayView<float> grad, int dim)
    {
        int u = i / dim, col = i % dim;
        float s = 0;
        for (int k = start[u]; k < start[u + 1]; k++) s += dx[(long)order[k] * dim + col];
        grad[(long)tokens[u] * dim + col] += s;
    }
}
