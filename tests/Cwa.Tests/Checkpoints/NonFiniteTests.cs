using Cwa.Core;

namespace Cwa.Tests.Checkpoints;

public class NonFiniteTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(1000)]
    [InlineData(1003)]
    public void FindsTheFirstNaNOrInfinityWhereverItIs(int at)
    {
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            var x = Enumerable.Range(0, 1004).Select(i => i * 1e-3f - 0.5f).ToArray();
            x[at] = bad;
            if (at + 5 < x.Length) x[at + 5] = float.NaN;
            Assert.Equal(at, NonFinite.FirstIndex(x.AsSpan()));
        }
        Assert.Equal(-1, NonFinite.FirstIndex(new[] { float.MaxValue, -float.MaxValue, float.Epsilon, 0f }.AsSpan()));
    }

    [Fact]
    public void TheParallelFormReturnsTheSmallestIndexAcrossChunks()
    {
        var x = new float[(1 << 22) * 3 + 17];
        Assert.Equal(-1, NonFinite.FirstIndex(x, 2));
        x[^1] = float.NaN;
        Assert.Equal(x.Length - 1, NonFinite.FirstIndex(x, 2));
        x[(1 << 22) + 3] = float.PositiveInfinity;
        Assert.Equal((1 << 22) + 3, NonFinite.FirstIndex(x, 2));
    }
}
