using Cwa.Core;
using Cwa.Core.Ranking;

namespace Cwa.Tests.Ranking;

public class RankingTests
{
    private static float[] Grid(ulong seed, int n)
    {
        var r = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)r.NextLong(20)).ToArray(); // many ties
    }

    [Fact]
    public void TopKEqualsAFullSortWithDocumentedTieOrder()
    {
        var x = Grid(1, 500);
        var c = new TopKCollector(37);
        c.Add(0, x);
        var expected = Enumerable.Range(0, x.Length).OrderByDescending(i => x[i]).ThenBy(i => i).Take(37).ToArray();
        Assert.Equal(expected, c.Result().Select(s => (int)s.FlatIndex).ToArray());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TopAndBottomKOnSeveralThreadsEqualAFullSortWithTiesAndNaN(bool largest)
    {
        // Over three of Best's per-thread ranges, a length that is no multiple of the 16-wide blocks, many ties
        // across range seams, NaNs, and the best values late (so the heap changes in the vectorised scan).
        int n = 3 * (1 << 20) + 37;
        var x = Grid(3, n);
        var r = new SplitMix64(9);
        for (int i = 0; i < 400; i++) x[r.NextLong(n)] = float.NaN;
        for (int i = 0; i < 50; i++) x[n - 1 - (int)r.NextLong(1 << 20)] = largest ? 20 + i % 3 : -1 - i % 3;
        var order = Enumerable.Range(0, n).Where(i => largest || !float.IsNaN(x[i]));
        var expected = (largest ? order.OrderByDescending(i => x[i]) : order.OrderBy(i => x[i])).ThenBy(i => i).Take(300).Select(i => (long)i).ToArray();
        foreach (int threads in new[] { 1, 2, 3, 4 })
            Assert.Equal(expected, TopKCollector.Best(300, largest, 0, x, n, threads).Select(s => s.FlatIndex));
        // A floor at the k-th best value, below it, or too high (then it scans again without) changes nothing.
        if (largest)
        {
            float kth = x[expected[^1]];
            foreach (float floor in new[] { kth, kth - 3, 21f, float.PositiveInfinity })
                Assert.Equal(expected, TopKCollector.Best(300, largest, 0, x, n, 2, floor).Select(s => s.FlatIndex));
        }
        // One collector fed in two pieces (flat indices continuing) finds the same.
        var c = new TopKCollector(300, largest);
        c.Add(0, x.AsSpan(0, 1000));
        c.Add(0, x.AsSpan(1000), firstIndex: 1000);
        Assert.Equal(expected, c.Result().Select(s => s.FlatIndex));
    }

    [Fact]
    public void TopKOfAllNaNScoresKeepsNaNsLastAndBottomKKeepsNone()
    {
        var x = Enumerable.Repeat(float.NaN, 100).ToArray();
        Assert.Equal([0L, 1L, 2L], TopKCollector.Best(3, true, 0, x, x.Length, 2).Select(s => s.FlatIndex));
        Assert.Empty(TopKCollector.Best(3, false, 0, x, x.Length, 2));
    }

    [Fact]
    public void GlobalTopKEqualsTopKOfTheConcatenation()
    {
        var tensors = Enumerable.Range(0, 5).Select(t => Grid((ulong)t + 10, 200 + 13 * t)).ToList();
        var global = new TopKCollector(50);
        foreach (var (t, i) in tensors.Select((t, i) => (t, i)))
        {
            // Per-tensor top-k first, then merge: what the pipeline does to stay O(k) in memory.
            var local = new TopKCollector(50);
            local.Add(i, t);
            foreach (var s in local.Result()) global.Offer(s);
        }
        var all = tensors.SelectMany((t, ti) => t.Select((v, fi) => (ti, fi, v)))
            .OrderByDescending(e => e.v).ThenBy(e => e.ti).ThenBy(e => e.fi).Take(50).ToArray();
        Assert.Equal(all.Select(e => (e.ti, (long)e.fi)), global.Result().Select(s => (s.TensorIndex, s.FlatIndex)));
    }

    [Fact]
    public void BottomKKeepsTheSmallestAndSkipsNaN()
    {
        float[] x = [5, float.NaN, 1, 3, 1, 0.5f, 9];
        var c = new TopKCollector(3, largest: false);
        c.Add(0, x);
        Assert.Equal([5L, 2L, 4L], c.Result().Select(s => s.FlatIndex));
    }

    [Fact]
    public void NaNRanksLastInTopK()
    {
        var c = new TopKCollector(2);
        c.Add(0, [float.NaN, 1f, 2f]);
        Assert.Equal([2L, 1L], c.Result().Select(s => s.FlatIndex));
    }

    [Fact]
    public void RandomKIsDeterministicDistinctAndExact()
    {
        var a = RandomKSelector.Select(1000, 100, 42, 3);
        Assert.Equal(a, RandomKSelector.Select(1000, 100, 42, 3));
        Assert.NotEqual(a, RandomKSelector.Select(1000, 100, 43, 3));
        Assert.Equal(100, a.Distinct().Count());
        Assert.All(a, i => Assert.InRange(i, 0, 999));
        Assert.Equal(10, RandomKSelector.Select(10, 50, 1, 0).Length);
    }

    [Fact]
    public void ModesAndControlsParseAsSpelled()
    {
        Assert.Equal(RankingMode.Global, RankingModes.Parse("global"));
        Assert.Equal(ControlKind.BottomK, RankingModes.ParseControl("bottom_k"));
        Assert.Contains("per_block", Assert.Throws<InputException>(() => RankingModes.Parse("top")).Message);
        Assert.Contains("random_k", Assert.Throws<InputException>(() => RankingModes.ParseControl("randomk")).Message);
    }

    [Fact]
    public void OverlapMeasuresOnKnownExamples()
    {
        var a = new HashSet<int> { 1, 2, 3, 4 };
        var b = new HashSet<int> { 3, 4, 5 };
        Assert.Equal(2.0 / 5, SetOverlap.Jaccard(a, b), 12);
        Assert.Equal(2.0 / 3, SetOverlap.OverlapCoefficient(a, b), 12);
        Assert.Equal(1.0, SetOverlap.Spearman([1, 2, 3, 4], [10, 20, 30, 40]), 12);
        Assert.Equal(-1.0, SetOverlap.Spearman([1, 2, 3], [3, 2, 1]), 12);
        Assert.Equal(0.5, SetOverlap.Spearman([1, 2, 2, 3], [1, 3, 2, 2]), 12);
    }
}
