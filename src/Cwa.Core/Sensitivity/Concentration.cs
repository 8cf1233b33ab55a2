using Cwa.Core.Models;
using Cwa.Core.Ranking;

namespace Cwa.Core.Sensitivity;

/// <summary>One row or column of a tensor: how many of its top-0.1% weights it holds and their score mass.</summary>
public sealed record ChannelShare(int Index, long Count, double Mass);

/// <summary>
/// How the top 0.1% of a 2-D tensor's scores spread over its rows and columns. Critical weights cluster in single
/// channels (the published super weights of a model share one column of down_proj), and these numbers say so:
/// the channels holding most of them by count and by score mass, the largest share one channel holds, and the
/// Herfindahl index (sum of squared shares: 1 when one channel holds everything, 1/channels when spread evenly).
/// </summary>
public sealed record Concentration(
    string Tensor, int TopCount, double Threshold,
    IReadOnlyList<ChannelShare> TopRowsByCount, IReadOnlyList<ChannelShare> TopRowsByMass,
    IReadOnlyList<ChannelShare> TopColumnsByCount, IReadOnlyList<ChannelShare> TopColumnsByMass,
    double MaxRowShare, double MaxColumnShare, double RowHhi, double ColumnHhi, double UniformRowHhi, double UniformColumnHhi)
{
    public const double TopFraction = 0.001;
    private const int Listed = 5;

    /// <summary>The top ceil(0.1% n) of scores[0 .. n) (ties by flat index, as every ranking here) of a 2-D tensor; null for 1-D.</summary>
    /// <param name="p999">the tensor's 99.9th percentile when known: the top 0.1% lie at or above it, so only they are ranked</param>
    public static Concentration? Of(ParameterSpec spec, int tensorIndex, float[] scores, int n, int threads = 1, double? p999 = null)
    {
        if (!spec.Is2D || n == 0) return null;
        int k = (int)Math.Max(1, Math.Ceiling(n * TopFraction));
        float? floor = p999 is double p && !double.IsNaN(p) ? (float)p : null;
        var chosen = TopKCollector.Best(k, largest: true, tensorIndex, scores, n, threads, floor);
        var rows = new Dictionary<int, (long Count, double Mass)>();
        var cols = new Dictionary<int, (long Count, double Mass)>();
        foreach (var c in chosen)
        {
            int row = (int)(c.FlatIndex / spec.Cols), col = (int)(c.FlatIndex % spec.Cols);
            var r = rows.GetValueOrDefault(row);
            rows[row] = (r.Count + 1, r.Mass + c.Score);
            var q = cols.GetValueOrDefault(col);
            cols[col] = (q.Count + 1, q.Mass + c.Score);
        }
        static List<ChannelShare> Best(Dictionary<int, (long Count, double Mass)> d, Func<(long Count, double Mass), double> key) =>
            d.OrderByDescending(kv => key(kv.Value)).ThenBy(kv => kv.Key).Take(Listed).Select(kv => new ChannelShare(kv.Key, kv.Value.Count, kv.Value.Mass)).ToList();
        double Hhi(Dictionary<int, (long Count, double Mass)> d) => d.Values.Sum(v => (double)v.Count / chosen.Count * v.Count / chosen.Count);
        return new Concentration(spec.Name, chosen.Count, chosen[^1].Score,
            Best(rows, v => v.Count), Best(rows, v => v.Mass), Best(cols, v => v.Count), Best(cols, v => v.Mass),
            rows.Values.Max(v => v.Count) / (double)chosen.Count, cols.Values.Max(v => v.Count) / (double)chosen.Count,
            Hhi(rows), Hhi(cols), 1.0 / Math.Min(spec.Rows, chosen.Count), 1.0 / Math.Min(spec.Cols, chosen.Count));
    }
}
