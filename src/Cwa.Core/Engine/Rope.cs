using System.Numerics;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>
/// Rotary position embedding, Hugging Face rotate-half convention: dimension i pairs with i + d/2,
/// q' = q * cos + rotate_half(q) * sin. Backward is the inverse rotation (transpose of the rotation matrix).
/// Frequencies follow transformers' rope init, including the "llama3" scaling of Llama 3.1 and "linear".
/// </summary>
internal sealed class Rope<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T[] _cos;
    private readonly T[] _sin;
    private readonly int _half;

    public Rope(ModelConfig c, int maxPositions)
    {
        _half = c.HeadDim / 2;
        var invFreq = InverseFrequencies(c);
        _cos = new T[maxPositions * _half];
        _sin = new T[maxPositions * _half];
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < _half; i++)
            {
                // transformers computes the angle in fp32; doing it in fp32 too keeps long positions comparable.
                float angle = (float)p * (float)invFreq[i];
                _cos[p * _half + i] = T.CreateTruncating(Math.Cos(angle));
                _sin[p * _half + i] = T.CreateTruncating(Math.Sin(angle));
            }
    }

    public int MaxPositions => _cos.Length / Math.Max(1, _half);
    /// <summary>Tables [position, headDim / 2], for backends that apply the rotation elsewhere (the device).</summary>
    public T[] CosTable => _cos;
    public T[] SinTable => _sin;

    public static double[] InverseFrequencies(ModelConfig c)
    {
        int d = c.HeadDim;
        var inv = new double[d / 2];
        for (int i = 0; i < d / 2; i++)
            inv[i] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d);
        var s = c.RopeScaling;
        if (s is null) return inv;
        switch (s.Type)
        {
            case "linear":
                for (int i = 0; i < inv.Length; i++) inv[i] /= s.Factor;
                return inv;
            case "llama3":
                double lowWave = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
                double highWave = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                for (int i = 0; i < inv.Length; i++)
                {
                    double wave = 2 * Math.PI / inv[i];
                    if (wave > lowWave) inv[i] /= s.Factor;
                    else if (wave >= highWave)
                    {
                        double smooth = (s.OriginalMaxPositionEmbeddings / wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                        inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
                    }
                }
                return inv;
            default:
                throw new InputException($"rope_scaling type '{s.Type}' is not supported (supported: llama3, linear)");
        }
    }

    /// <summary>Rotates every head of x [rows, heads*headDim] in place; row r sits at position r % seqLen.</summary>
    public void Apply(T[] x, int rows, int seqLen, int heads, bool inverse, int threads = 1) =>
        Apply(x, rows, r => r % seqLen, heads, inverse, threads);

    /// <summary>The same with row r at position positions[r] (rows of several sequences packed back to back).</summary>
    public void Apply(T[] x, int[] positions, int heads, bool inverse, int threads = 1) =>
        Apply(x, positions.Length, r => positions[r], heads, inverse, threads);

    private void Apply(T[] x, int rows, Func<int, int> position, int heads, bool inverse, int threads)
    {
        int hd = 2 * _half, stride = heads * hd;
        Gemm.ParallelFor(rows, threads, r =>
        {
            int tb = position(r) * _half;
            for (int h = 0; h < heads; h++)
            {
                int o = r * stride + h * hd;
                for (int i = 0; i < _half; i++)
                {
                    T c = _cos[tb + i], s = inverse ? -_sin[tb + i] : _sin[tb + i];
                    T a = x[o + i], b = x[o + i + _half];
                    x[o + i] = a * c - b * s;
                    x[o + i + _half] = b * c + a * s;
                }
            }
        });
    }
}
