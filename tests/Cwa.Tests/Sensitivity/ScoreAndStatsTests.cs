using Cwa.Core;
using Cwa.Core.Models;
using Cwa.Core.Sensitivity;

namespace Cwa.Tests.Sensitivity;

public class ScoreAndStatsTests
{
    private static readonly ParameterSpec Spec = new("model.layers.0.mlp.down_proj.weight", [3, 4], ParameterRole.DownProj, 0, "mlp.down_proj");

    private static float[] Rand(ulong seed, int n)
    {
        var r = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)r.NextGaussian()).ToArray();
    }

    [Fact]
    public void EveryMetricMatchesADirectComputation()
    {
        var w = Rand(1, 12);
        var g = Rand(2, 12);
        var f = Rand(3, 12).Select(Math.Abs).ToArray();
        var h = Rand(4, 12);
        var norms = Rand(5, 4).Select(Math.Abs).ToArray();
        var maxes = Rand(6, 4).Select(Math.Abs).ToArray();
        var input = new TensorScoreInput { Spec = Spec, Weights = w, Gradient = g, FisherSum = f, HessianDiag = h, InputNorms = norms, InputMaxAbs = maxes };
        var expected = new Dictionary<SensitivityMetric, Func<int, double>>
        {
            [SensitivityMetric.GradXWeight] = i => Math.Abs(g[i] * w[i]),
            [SensitivityMetric.GradSquared] = i => g[i] * g[i],
            [SensitivityMetric.Fisher] = i => f[i],
            [SensitivityMetric.HutchinsonDiag] = i => Math.Abs(h[i]),
            [SensitivityMetric.Obd] = i => 0.5 * f[i] * w[i] * w[i],
            [SensitivityMetric.Magnitude] = i => Math.Abs(w[i]),
            [SensitivityMetric.Wanda] = i => Math.Abs(w[i]) * norms[i % 4],
            [SensitivityMetric.ActOutlier] = i => Math.Abs(w[i]) * maxes[i % 4],
        };
        var scores = new float[12];
        foreach (var (metric, fn) in expected)
        {
            ScoreFunctions.Compute(metric, input, scores);
            for (int i = 0; i < 12; i++) Assert.Equal(fn(i), scores[i], 5);
        }
        ScoreFunctions.Compute(SensitivityMetric.Obd, input, scores, ObdCurvature.Hutchinson);
        Assert.Equal(0.5 * Math.Abs(h[5]) * w[5] * w[5], scores[5], 5);
        Assert.Throws<CwaException>(() => ScoreFunctions.Compute(SensitivityMetric.Wanda, new TensorScoreInput { Spec = Spec, Weights = w }, scores));
    }

    [Fact]
    public void UnknownMetricListsValidNames()
    {
        var e = Assert.Throws<InputException>(() => SensitivityMetrics.Parse("snip"));
        Assert.Contains("grad_x_weight", e.Message);
        Assert.Contains("act_outlier", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(1000)]
    [InlineData(4097)]
    public void StatsMatchASortedReference(int n)
    {
        var r = new SplitMix64((ulong)n);
        // Many ties and zeros: values on a coarse grid.
        var x = Enumerable.Range(0, n).Select(_ => (float)Math.Max(0, Math.Round(r.NextGaussian() * 3))).ToArray();
        var spec = new ParameterSpec("t", [n], ParameterRole.FinalNorm, -1, "norm");
        var (s, sumSq) = TensorStatsCalculator.Compute(spec, x, n);
        var sorted = x.Select(v => (double)v).Order().ToArray();
        double Pct(double p)
        {
            double pos = p / 100 * (n - 1);
            int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, n - 1);
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
        }
        Assert.Equal(sorted.Average(), s.Mean, 9);
        Assert.Equal(Math.Sqrt(sorted.Select(v => (v - s.Mean) * (v - s.Mean)).Average()), s.Std, 9);
        Assert.Equal(sorted[0], s.Min);
        Assert.Equal(sorted[^1], s.Max);
        Assert.Equal(Pct(50), s.P50, 9);
        Assert.Equal(Pct(95), s.P95, 9);
        Assert.Equal(Pct(99), s.P99, 9);
        Assert.Equal(Pct(99.9), s.P999, 9);
        Assert.Equal(x.Count(v => v == 0), s.NumZeros);
        Assert.Equal(sorted.Sum(v => v * v), sumSq, 6);
    }

    [Fact]
    public void LargeTensorsUseTheParallelPathsAndStayExact()
    {
        // 3 M values over several chunks, 40% exact zeros (one bucket larger than the sort limit) and heavy ties.
        int n = 3_000_000;
        var r = new SplitMix64(77);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = r.NextDouble() < 0.4 ? 0f : (float)Math.Round(Math.Abs(r.NextGaussian()) * 1000) / 1000f;
        var spec = new ParameterSpec("big", [n], ParameterRole.FinalNorm, -1, "norm");
        var (s, _) = TensorStatsCalculator.Compute(spec, x, n, threads: 2);
        var sorted = (float[])x.Clone();
        Array.Sort(sorted);
        double Pct(double p)
        {
            double pos = p / 100 * (n - 1);
            int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, n - 1);
            return sorted[lo] + ((double)sorted[hi] - sorted[lo]) * (pos - lo);
        }
        Assert.Equal(Pct(50), s.P50, 12);
        Assert.Equal(Pct(95), s.P95, 12);
        Assert.Equal(Pct(99), s.P99, 12);
        Assert.Equal(Pct(99.9), s.P999, 12);
        Assert.Equal(x.Count(v => v == 0), s.NumZeros);
        Assert.Equal(x.Average(v => (double)v), s.Mean, 9);
        Assert.Equal(s, TensorStatsCalculator.Compute(spec, x, n, threads: 1).Stats);

        var parallel = new LogHistogramBuilder();
        parallel.Add(x, n, 2);
        var serial = new LogHistogramBuilder();
        serial.Add(x);
        Assert.Equal(serial.Build().Counts, parallel.Build().Counts);
        Assert.Equal(serial.Build().Zeros, parallel.Build().Zeros);
    }

    [Fact]
    public void HistogramCountsEveryValueOnceAndAggregatesAreExact()
    {
        var b = new LogHistogramBuilder();
        var x = Rand(9, 5000).Select(v => v * v * 1e-4f).Concat([0f, 0f, -1f, 1e-40f, 1e20f]).ToArray();
        b.Add(x.AsSpan(0, 3000));
        var other = new LogHistogramBuilder();
        other.Add(x.AsSpan(3000));
        b.Merge(other);
        var h = b.Build();
        Assert.Equal(x.Length, h.Counts.Sum() + h.Zeros + h.Negatives);
        Assert.Equal(2 + x.Count(v => v == 0) - 2, h.Zeros);
        Assert.Equal(1, h.Negatives);
        Assert.Equal(h.Counts.Length + 1, h.Edges.Length);

        var agg = new AggregateStats();
        var a = TensorStatsCalculator.Compute(Spec, x[..12], 12);
        var c = TensorStatsCalculator.Compute(Spec, x[12..24], 12);
        agg.Add("block 0", a.Stats, a.SumSquares);
        agg.Add("block 0", c.Stats, c.SumSquares);
        var row = Assert.Single(agg.Rows());
        var all = x.Take(24).Select(v => (double)v).ToArray();
        Assert.Equal(24, row.NumWeights);
        Assert.Equal(all.Average(), row.Mean, 9);
        Assert.Equal(Math.Sqrt(all.Select(v => (v - row.Mean) * (v - row.Mean)).Average()), row.Std, 9);
        Assert.Equal(all.Max(), row.Max, 9);
    }

    [Fact]
    public void ActivationStatsFindAPlantedSuperWeight()
    {
        var stats = new ActivationStats();
        var spec = new ParameterSpec("model.layers.3.mlp.down_proj.weight", [6, 10], ParameterRole.DownProj, 3, "mlp.down_proj");
        var x = new float[4 * 10];
        var y = new float[4 * 6];
        for (int i = 0; i < x.Length; i++) x[i] = 0.1f * (i % 7);
        x[2 * 10 + 7] = 50f;   // token 2, input channel 7
        x[3 * 10 + 1] = 900f;  // padding token: must be ignored
        y[2 * 6 + 4] = -80f;   // token 2, output channel 4
        bool[] real = [true, true, true, false];
        stats.OnLinearInput(spec, x, 4, 10, real);
        stats.OnLinearOutput(spec, y, 4, 6, real);
        var peak = Assert.Single(stats.DownProjPeaks);
        Assert.Equal((7, 4, 50f, 80f), (peak.InputChannel, peak.OutputChannel, peak.MaxAbsInput, peak.MaxAbsOutput));
        Assert.Equal(50f, stats.InputMaxAbs(spec.Name)![7]);
        Assert.Equal(Math.Sqrt(50.0 * 50 + 0.1 * 0.1 * 4 * 0 + Sq(x[7]) + Sq(x[17])), stats.InputNorms(spec.Name)![7], 4);
        var report = SuperWeightReport.Build(stats.DownProjPeaks, (l, r, c) => l * 100 + r * 10 + c);
        Assert.Equal((4, 7, 347.0), (report[0].Row, report[0].Col, report[0].Weight));

        static double Sq(float v) => (double)v * v;
    }

    [Fact]
    public void ShapeStatisticsMatchADirectTwoPassComputation()
    {
        var r = new SplitMix64(21);
        int n = 30_011;
        // Skewed and heavy-tailed like gradient scores: |g|^2 of a normal, with a block of exact zeros.
        var x = Enumerable.Range(0, n).Select(i => i % 97 == 0 ? 0f : (float)Math.Pow(r.NextGaussian(), 2)).ToArray();
        var spec = new ParameterSpec("t", [n], ParameterRole.InputNorm, 0, "n");
        var (s, _) = TensorStatsCalculator.Compute(spec, x, n, threads: 2);
        double mean = x.Average(v => (double)v);
        double m2 = x.Sum(v => Math.Pow(v - mean, 2)) / n, m3 = x.Sum(v => Math.Pow(v - mean, 3)) / n, m4 = x.Sum(v => Math.Pow(v - mean, 4)) / n;
        Assert.Equal(m3 / Math.Pow(m2, 1.5), s.Skewness, 1e-9);
        Assert.Equal(m4 / (m2 * m2) - 3, s.ExcessKurtosis, 1e-8);
        var sorted = x.Select(v => (double)v).Order().ToArray();
        double Linear(double q) { double pos = q * (n - 1); int lo = (int)Math.Floor(pos); return sorted[lo] + (sorted[Math.Min(lo + 1, n - 1)] - sorted[lo]) * (pos - lo); }
        Assert.Equal(Linear(0.25), s.Q25);
        Assert.Equal(Linear(0.75), s.Q75);
        Assert.Equal((double)x.Count(v => v == 0) / n, s.ZeroShare);
        var constant = TensorStatsCalculator.Compute(spec, Enumerable.Repeat(2f, 10).ToArray(), 10).Stats;
        Assert.True(double.IsNaN(constant.Skewness) && double.IsNaN(constant.ExcessKurtosis), "constant scores have no shape");
    }

    [Fact]
    public void ConcentrationFindsAPlantedColumn()
    {
        int rows = 400, cols = 250, n = rows * cols;
        var r = new SplitMix64(4);
        var x = Enumerable.Range(0, n).Select(_ => (float)Math.Abs(r.NextGaussian())).ToArray();
        // Column 17 holds large scores in 60 rows: most of the top 0.1% (100 weights) must sit there.
        for (int row = 0; row < 60; row++) x[row * cols + 17] = 50 + row;
        var spec = new ParameterSpec("m.down_proj.weight", [rows, cols], ParameterRole.DownProj, 3, "mlp.down_proj");
        var c = Concentration.Of(spec, 0, x, n, threads: 2)!;
        Assert.Equal(100, c.TopCount);
        Assert.Equal(17, c.TopColumnsByCount[0].Index);
        Assert.Equal(60, c.TopColumnsByCount[0].Count);
        Assert.Equal(17, c.TopColumnsByMass[0].Index);
        Assert.Equal(0.6, c.MaxColumnShare, 12);
        Assert.True(c.ColumnHhi > 0.35 && c.ColumnHhi > 20 * c.UniformColumnHhi, $"column HHI {c.ColumnHhi}");
        Assert.True(c.MaxRowShare <= 0.05, $"rows are not concentrated: {c.MaxRowShare}");
        // Ranking only the scores at or above the tensor's exact 99.9th percentile finds the same top 0.1%.
        var (st, _) = TensorStatsCalculator.Compute(spec, x, n);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(c), System.Text.Json.JsonSerializer.Serialize(Concentration.Of(spec, 0, x, n, 2, st.P999)));
        Assert.Null(Concentration.Of(new ParameterSpec("n", [5], ParameterRole.InputNorm, 0, "n"), 0, new float[5], 5));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(16 * 5 + 9)]
    [InlineData(100_003)]
    public void ChunkMomentsMatchAScalarSumInDoubleWithZerosAndNaNSkippedByMinAndMax(int n)
    {
        var r = new SplitMix64((ulong)n + 1);
        var x = Enumerable.Range(0, n).Select(i => i % 11 == 0 ? 0f : (float)Math.Abs(r.NextGaussian() * 1e-3)).ToArray();
        var (sum, min, max, zeros, nans) = Moments.First(x);
        Assert.Equal(x.Sum(v => (double)v), sum, Math.Max(1e-12, Math.Abs(sum) * 1e-12));
        Assert.Equal(n == 0 ? double.PositiveInfinity : x.Min(), min);
        Assert.Equal(n == 0 ? double.NegativeInfinity : x.Max(), max);
        Assert.Equal(x.Count(v => v == 0), zeros);
        Assert.Equal(0, nans);
        double mean = n == 0 ? 0 : sum / n;
        var (m2, m3, m4, sq) = Moments.Central(x, mean);
        // Each against the scalar sum, to 1e-12 of the sum of its terms' magnitudes (the third moment cancels).
        foreach (var (got, p) in new[] { (m2, 2), (m3, 3), (m4, 4) })
            Assert.True(Math.Abs(got - x.Sum(v => Math.Pow(v - mean, p))) <= 1e-12 * x.Sum(v => Math.Pow(Math.Abs(v - mean), p)), $"moment {p}: {got}");
        Assert.Equal(x.Sum(v => (double)v * v), sq, Math.Max(1e-300, x.Sum(v => (double)v * v) * 1e-12));
        if (n < 20) return;
        // NaN anywhere (in a vector block or the scalar tail) makes the sum NaN, is counted, and never becomes min or max.
        x[3] = float.NaN;
        x[n - 1] = float.NaN;
        var withNaN = Moments.First(x);
        Assert.True(double.IsNaN(withNaN.Sum));
        Assert.Equal(2, withNaN.NaNs);
        Assert.Equal(x.Where(v => !float.IsNaN(v)).Min(), withNaN.Min);
        Assert.Equal(x.Where(v => !float.IsNaN(v)).Max(), withNaN.Max);
    }
}
