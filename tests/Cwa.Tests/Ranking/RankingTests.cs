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
