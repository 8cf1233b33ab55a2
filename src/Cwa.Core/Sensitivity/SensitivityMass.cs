namespace Cwa.Core.Sensitivity;

/// <summary>One tensor, block or component: its share of the model's total score, and of its weights.</summary>
public sealed record MassShare(string Key, long NumWeights, double Sum, double Share, double WeightShare)
{
    /// <summary>Share of the score over share of the weights: above 1, the group is more sensitive than average per weight.</summary>
    public double Density => WeightShare > 0 ? Share / WeightShare : double.NaN;
}

/// <summary>
/// Where the sensitivity mass sits: each tensor's, block's and component's share of the summed score over all scored
/// weights, ranked. The basis for choosing what to keep at higher precision (the exports use the per-tensor shares).
/// </summary>
public sealed record SensitivityMass(IReadOnlyList<MassShare> Tensors, IReadOnlyList<MassShare> Blocks, IReadOnlyList<MassShare> Components)
{
    public static SensitivityMass Of(IReadOnlyList<TensorStats> stats)
    {
        double total = stats.Where(s => double.IsFinite(s.Sum)).Sum(s => s.Sum);
        long weights = stats.Sum(s => s.NumWeights);
        List<MassShare> Ranked(IEnumerable<IGrouping<string, TensorStats>> groups) => groups
            .Select(g => (g.Key, N: g.Sum(s => s.NumWeights), Sum: g.Where(s => double.IsFinite(s.Sum)).Sum(s => s.Sum)))
            .Select(g => new MassShare(g.Key, g.N, g.Sum, total > 0 ? g.Sum / total : double.NaN, weights > 0 ? (double)g.N / weights : double.NaN))
            .OrderByDescending(m => m.Share).ThenBy(m => m.Key, StringComparer.Ordinal).ToList();
        return new SensitivityMass(
            Ranked(stats.GroupBy(s => s.Name)),
            Ranked(stats.GroupBy(s => s.Block < 0 ? "other" : $"block {s.Block}")),
            Ranked(stats.GroupBy(s => s.Component)));
    }
}
