using Cwa.Core.Pipeline;

namespace Cwa.Core.Ranking;

/// <summary>
/// Agreement of two rankings' top-k lists as k grows, for every ranking mode, from the candidates each run kept.
/// Rank correlation uses Fagin et al.'s (2003) convention for top-k lists: on the union of the two lists, a weight
/// missing from one list takes rank k + 1 there (the scores of weights below a run's top-k are not kept).
/// </summary>
public static class TopKAgreement
{
    public static readonly RankingMode[] Modes = [RankingMode.PerLayer, RankingMode.Global, RankingMode.PerBlock];

    /// <summary>1, 2, 3, 5, 10, 20, 30, 50, 100, ... up to and including maxK.</summary>
    public static int[] Grid(int maxK)
    {
        var ks = new SortedSet<int> { maxK };
        for (int decade = 1; decade <= maxK; decade *= 10)
            foreach (int m in new[] { 1, 2, 3, 5 })
                if (m * decade <= maxK) ks.Add(m * decade);
        return ks.ToArray();
    }

    /// <summary>The mode's top-k lists: one per tensor (per_layer), per block (per_block), or one (global); best first.</summary>
    public static IEnumerable<List<(int, long)>> Lists(RankingResult r, RankingMode mode, int k) => mode switch
    {
        RankingMode.Global => [r.Global.Take(k).Select(Key).ToList()],
        RankingMode.PerBlock => r.PerBlock.OrderBy(kv => kv.Key).Select(kv => kv.Value.Take(k).Select(Key).ToList()),
        _ => r.ScoredTensors.Select(t => r.TopPerTensor[t].Take(k).Select(Key).ToList()),
    };

    public static double Jaccard(RankingResult a, RankingResult b, RankingMode mode, int k) =>
        SetOverlap.Jaccard(Lists(a, mode, k).SelectMany(l => l).ToHashSet(), Lists(b, mode, k).SelectMany(l => l).ToHashSet());

    /// <summary>Spearman correlation of the two top-k lists on their union (missing: rank k + 1), averaged over the mode's lists.</summary>
    public static double RankCorrelation(RankingResult a, RankingResult b, RankingMode mode, int k)
    {
        var rhos = Lists(a, mode, k).Zip(Lists(b, mode, k), (la, lb) => ListSpearman(la, lb, k)).Where(double.IsFinite).ToList();
        return rhos.Count == 0 ? double.NaN : rhos.Average();
    }

    public static double ListSpearman(List<(int, long)> a, List<(int, long)> b, int k)
    {
        var rankA = a.Select((x, i) => (x, i)).ToDictionary(p => p.x, p => (double)p.i + 1);
        var rankB = b.Select((x, i) => (x, i)).ToDictionary(p => p.x, p => (double)p.i + 1);
        var union = a.Concat(b).Distinct().ToList();
        // Ranks are negated so the best weight has the largest value, as Spearman on scores would see it.
        return SetOverlap.Spearman(union.Select(x => -rankA.GetValueOrDefault(x, k + 1)).ToList(), union.Select(x => -rankB.GetValueOrDefault(x, k + 1)).ToList());
    }

    private static (int, long) Key(ScoredIndex s) => (s.TensorIndex, s.FlatIndex);
}
