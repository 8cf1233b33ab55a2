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

    [Theory]
    [InlineData(0)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(1003)]
    public void FindsTheFirstNaNOrInfinityInBf16BitsWhereverItIs(int at)
    {
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            var x = Enumerable.Range(0, 1004).Select(i => Cwa.Core.Checkpoints.DTypeConversion.FloatToBf16(i * 1e-3f - 0.5f)).ToArray();
            x[at] = Cwa.Core.Checkpoints.DTypeConversion.FloatToBf16(bad);
            if (at + 5 < x.Length) x[at + 5] = 0x7FC0;
            Assert.Equal(at, NonFinite.FirstIndexBf16(x));
        }
        // The largest finite bf16 values, the smallest subnormal and -0 are finite.
        Assert.Equal(-1, NonFinite.FirstIndexBf16(new ushort[] { 0x7F7F, 0xFF7F, 0x0001, 0x8000 }));
    }

    [Fact]
    public void TheParallelBf16FormReturnsTheSmallestIndexAcrossChunks()
    {
        var x = new ushort[(1 << 22) * 3 + 17];
        Assert.Equal(-1, NonFinite.FirstIndexBf16Parallel(x, 2));
        x[^1] = 0x7FC0;
        Assert.Equal(x.Length - 1, NonFinite.FirstIndexBf16Parallel(x, 2));
        x[(1 << 22) + 3] = 0xFF80;
        Assert.Equal((1 << 22) + 3, NonFinite.FirstIndexBf16Parallel(x, 2));
    }
}
