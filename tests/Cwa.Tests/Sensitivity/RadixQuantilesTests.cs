using Cwa.Core.Sensitivity;

namespace Cwa.Tests.Sensitivity;

public class RadixQuantilesTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void QuantilesAreWithinHalfABucketOfTheExactValues(bool signed)
    {
        var rng = new Random(5);
        var values = Enumerable.Range(0, 50_000).Select(_ => (float)(Math.Exp(rng.NextDouble() * 20 - 15) * (signed && rng.Next(2) == 0 ? -1 : 1))).ToList();
        values.AddRange(Enumerable.Repeat(0f, 500));
        values.Add(float.NaN);
        var q = new RadixQuantiles();
        q.Add(values.Take(20_000).ToArray());
        q.Add(values.Skip(20_000).ToArray());
        var sorted = values.Where(v => !float.IsNaN(v)).Order().ToArray();
        Assert.Equal(sorted.Length, q.Total);
        foreach (double p in new[] { 0.01, 0.25, 0.5, 0.95, 0.99, 0.999, 1.0 })
        {
            double exact = sorted[(int)Math.Ceiling(p * sorted.Length) - 1];
            double approx = q.Quantile(p);
            Assert.True(Math.Abs(approx - exact) <= Math.Abs(exact) / 256 + 1e-30, $"q{p}: {approx} vs {exact}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ASecondPassGivesTheExactNearestRankValues(bool signed)
    {
        var rng = new Random(7);
        // Many values in few buckets (a narrow distribution), ties, zeros and a NaN.
        var values = Enumerable.Range(0, 60_000).Select(_ => (float)((1 + rng.NextDouble() * 0.05) * (signed && rng.Next(3) == 0 ? -1 : 1))).ToList();
        values.AddRange(Enumerable.Repeat(1.01f, 300));
        values.AddRange(Enumerable.Repeat(0f, 700));
        values.Add(float.NaN);
        var chunks = values.Chunk(7_000).ToList();
        var q = new RadixQuantiles();
        foreach (var c in chunks) q.Add(c);
        double[] ps = [0.001, 0.01, 0.3, 0.5, 0.95, 0.99, 0.999, 1.0];
        var exact = q.Refine(ps);
        foreach (var c in chunks) exact.Add(c);
        var sorted = values.Where(v => !float.IsNaN(v)).Order().ToArray();
        foreach (double p in ps)
            Assert.Equal(sorted[(int)Math.Ceiling(p * sorted.Length) - 1], exact.Quantile(p));
        Assert.True(double.IsNaN(exact.Quantile(0.42)), "a quantile not asked for has no value");
    }

    [Fact]
    public void AllZerosGiveZeroAndNothingGivesNaN()
    {
        var q = new RadixQuantiles();
        Assert.True(double.IsNaN(q.Quantile(0.5)));
        q.Add([0f, -0f, 0f]);
        Assert.Equal(0, q.Quantile(0.5));
    }

    [Fact]
    public void ATensorsOwnPercentileCountsGiveTheSameModelWideQuantilesAndNaNIsNeverCounted()
    {
        var spec = new Cwa.Core.Models.ParameterSpec("t", [300, 100], Cwa.Core.Models.ParameterRole.DownProj, 0, "mlp.down_proj");
        var rng = new Random(3);
        var values = Enumerable.Range(0, 30_000).Select(i => i % 7 == 0 ? 0f : (float)Math.Exp(rng.NextDouble() * 10 - 5)).ToArray();
        var direct = new RadixQuantiles();
        direct.Add(values);
        var reused = new RadixQuantiles();
        Cwa.Core.Sensitivity.TensorStatsCalculator.Compute(spec, values, values.Length, 2, reused);
        Assert.Equal(direct.Total, reused.Total);
        foreach (double p in new[] { 0.1, 0.5, 0.99 }) Assert.Equal(direct.Quantile(p), reused.Quantile(p));

        values[5] = float.NaN;
        var withNaN = new RadixQuantiles();
        Cwa.Core.Sensitivity.TensorStatsCalculator.Compute(spec, values, values.Length, 2, withNaN);
        Assert.Equal(values.Length - 1, withNaN.Total);
    }
}
