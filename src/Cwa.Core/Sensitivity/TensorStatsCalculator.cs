using Cwa.Core.Models;

namespace Cwa.Core.Sensitivity;

/// <summary>Exact statistics of one tensor's scores; the sum of squares is returned for exact aggregation.</summary>
public static class TensorStatsCalculator
{
    /// <summary>p50, p95, p99, p99.9, then the quartiles q25 and q75: the percentiles TensorStats holds, in that order.</summary>
    public static readonly double[] Percents = [50, 95, 99, 99.9, 25, 75];

    /// <summary>Statistics of scores[0 .. n); the scores are only read (no copy: at 8B one tensor's scores are 2 GB).</summary>
    /// <param name="modelWide">the model-wide quantiles, which take this tensor's radix counts (made here anyway)</param>
    public static (TensorStats Stats, double SumSquares) Compute(ParameterSpec spec, float[] scores, int n, int threads = 0, RadixQuantiles? modelWide = null)
    {
        if (n == 0) return (new TensorStats(spec.Name, spec.Block, spec.Component, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
        var scratch = scores;
        int t = threads > 0 ? threads : Environment.ProcessorCount;
        // Fixed chunks reduced in chunk order: the double sums do not depend on thread scheduling.
        const int chunk = 1 << 20;
        int chunks = (n + chunk - 1) / chunk;
        var part = new (double Sum, double Min, double Max, long Zeros, long NaNs)[chunks];
        Span<float> Piece(int c) => scratch.AsSpan(c * chunk, Math.Min(n, (c + 1) * chunk) - c * chunk);
        Engine.Gemm.ParallelFor(chunks, t, c => part[c] = Moments.First(Piece(c)));
        double total = part.Sum(p => p.Sum), mean = total / n;
        var moments = new (double M2, double M3, double M4, double SumSq)[chunks];
        Engine.Gemm.ParallelFor(chunks, t, c => moments[c] = Moments.Central(Piece(c), mean));
        double m2Total = moments.Sum(m => m.M2), sumSq = moments.Sum(m => m.SumSq);
        Span<double> p = stackalloc double[Percents.Length];
        long zeros = part.Sum(x => x.Zeros);
        // NaN scores must not count as values: such a tensor is counted apart, skipping them (the model-wide quantiles
        // then fall short of every weight and are reported as histogram bin edges).
        bool nans = part.Any(x => x.NaNs > 0);
        if (nans) modelWide?.Add(scratch.AsSpan(0, n));
        RadixPercentiles.Compute(scratch, n, Percents, p, t, modelWide == null || nans ? null : high => modelWide.AddKeyCounts(high, zeros));
        var stats = new TensorStats(spec.Name, spec.Block, spec.Component, n, mean, Math.Sqrt(m2Total / n), part.Min(x => x.Min), part.Max(x => x.Max),
            p[0], p[1], p[2], p[3], zeros, total) { Q25 = p[4], Q75 = p[5] };
        return (stats.WithMoments(m2Total, moments.Sum(m => m.M3), moments.Sum(m => m.M4)), sumSq);
    }
}
