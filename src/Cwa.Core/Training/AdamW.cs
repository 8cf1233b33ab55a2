using Cwa.Core.Engine;

namespace Cwa.Core.Training;

/// <summary>
/// AdamW (decoupled weight decay, Loshchilov and Hutter) over every parameter tensor.
/// Decay is applied to 2-D weights only; norms and biases are not decayed, as is usual for transformers.
/// </summary>
public sealed class AdamW
{
    private readonly float[][] _m;
    private readonly float[][] _v;
    private readonly ModelWeights<float> _weights;
    private int _step;

    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 0.1;

    public AdamW(ModelWeights<float> weights)
    {
        _weights = weights;
        _m = weights.Specs.Select(s => new float[s.NumElements]).ToArray();
        _v = weights.Specs.Select(s => new float[s.NumElements]).ToArray();
    }

    public void Step(ModelWeights<float> grads, double learningRate, double gradClip = 1.0)
    {
        _step++;
        double norm = Math.Sqrt(Enumerable.Range(0, grads.Specs.Count).Sum(i => SumSquares(grads[i])));
        double clip = norm > gradClip ? gradClip / norm : 1.0;
        double bc1 = 1 - Math.Pow(Beta1, _step), bc2 = 1 - Math.Pow(Beta2, _step);
        Parallel.For(0, _weights.Specs.Count, i =>
        {
            float[] w = _weights[i], g = grads[i], m = _m[i], v = _v[i];
            bool decay = _weights.Specs[i].Is2D;
            for (long j = 0; j < w.LongLength; j++)
            {
                double gj = g[j] * clip;
                m[j] = (float)(Beta1 * m[j] + (1 - Beta1) * gj);
                v[j] = (float)(Beta2 * v[j] + (1 - Beta2) * gj * gj);
                double update = (m[j] / bc1) / (Math.Sqrt(v[j] / bc2) + Eps);
                if (decay) update += WeightDecay * w[j];
                w[j] = (float)(w[j] - learningRate * update);
            }
        });
    }

    private static double SumSquares(float[] x)
    {
        double s = 0;
        foreach (float v in x) s += (double)v * v;
        return s;
    }
}
