namespace Cwa.Core.Sensitivity;

/// <summary>A group of tensors (a block, a component, or the whole model) summarised exactly from per-tensor sums.</summary>
public sealed record AggregateRow(string Key, long NumWeights, double Mean, double Std, double Max, double Sum);

public sealed class AggregateStats
{
    private readonly Dictionary<string, (long N, double Sum, double SumSq, double Max)> _groups = new();
    private readonly List<string> _order = new();

    public void Add(string key, TensorStats s, double sumSquares)
    {
        if (!_groups.TryGetValue(key, out var g)) { _order.Add(key); g = (0, 0, 0, double.NegativeInfinity); }
        _groups[key] = (g.N + s.NumWeights, g.Sum + s.Sum, g.SumSq + sumSquares, Math.Max(g.Max, s.Max));
    }

    public IReadOnlyList<AggregateRow> Rows() => _order.Select(k =>
    {
        var g = _groups[k];
        double mean = g.N == 0 ? 0 : g.Sum / g.N;
        double variance = g.N == 0 ? 0 : Math.Max(0, g.SumSq / g.N - mean * mean);
        return new AggregateRow(k, g.N, mean, Math.Sqrt(variance), g.Max, g.Sum);
    }).ToList();
}
