using Cwa.Core.Models;

namespace Cwa.Core.Sensitivity;

/// <summary>Exact statistics of one tensor's scores; the sum of squares is returned for exact aggregation.</summary>
public static class TensorStatsCalculator
{
    private static readonly double[] Percents = [50, 95, 99, 99.9];

    public static (TensorStats Stats, double SumSquares) Compute(ParameterSpec spec, ReadOnlySpan<float> scores, float[] scratch)
    {
        int n = scores.Length;
        if (n == 0) return (new TensorStats(spec.Name, spec.Block, spec.Component, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
        double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        long zeros = 0;
        foreach (float v in scores)
        {
            sum += v;
            if (v < min) min = v;
            if (v > max) max = v;
            if (v == 0) zeros++;
        }
        double mean = sum / n, m2 = 0, sumSq = 0;
        foreach (float v in scores)
        {
            double d = v - mean;
            m2 += d * d;
            sumSq += (double)v * v;
        }
        var work = scratch.AsSpan(0, n);
        scores.CopyTo(work);
        Span<double> p = stackalloc double[Percents.Length];
        Selection.Percentiles(work, Percents, p);
        return (new TensorStats(spec.Name, spec.Block, spec.Component, n, mean, Math.Sqrt(m2 / n), min, max, p[0], p[1], p[2], p[3], zeros, sum), sumSq);
    }
}
