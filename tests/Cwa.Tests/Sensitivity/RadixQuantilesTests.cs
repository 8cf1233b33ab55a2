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

    [Fact]
    public void AllZerosGiveZeroAndNothingGivesNaN()
    {
        var q = new RadixQuantiles();
        Assert.True(double.IsNaN(q.Quantile(0.5)));
        q.Add([0f, -0f, 0f]);
        Assert.Equal(0, q.Quantile(0.5));
    }
}
