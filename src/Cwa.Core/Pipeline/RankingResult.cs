using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Everything the scoring pass keeps: O(k) candidates per tensor/block/model, exact per-tensor stats, the
/// histogram. Top-k for any k up to the collected maximum is a prefix of these lists, which is how the k-sweep
/// gets its sets without rescoring.
/// </summary>
public sealed class RankingResult
{
    public required RankingMode Mode { get; init; }
    public required int MaxK { get; init; }
    public required IReadOnlyList<int> ScoredTensors { get; init; }
    public required IReadOnlyDictionary<int, List<ScoredIndex>> TopPerTensor { get; init; }
    public required IReadOnlyDictionary<int, List<ScoredIndex>> BottomPerTensor { get; init; }
    public required List<ScoredIndex> Global { get; init; }
    public required IReadOnlyDictionary<int, List<ScoredIndex>> PerBlock { get; init; }
    public required IReadOnlyList<TensorStats> Stats { get; init; }
    public required IReadOnlyList<AggregateRow> PerBlockAggregates { get; init; }
    public required IReadOnlyList<AggregateRow> PerComponentAggregates { get; init; }
    public required AggregateRow Overall { get; init; }
    public required TensorStats OverallStats { get; init; }
    public required LogHistogram Histogram { get; init; }
    /// <summary>Per 2-D host-scored tensor, in tensor order: how its top 0.1% spread over rows and columns.</summary>
    public IReadOnlyList<Concentration> Concentration { get; init; } = [];
    /// <summary>--dump-scores parquet: the dumped weights, per tensor in tensor order, best first within each.</summary>
    public IReadOnlyList<ScoredIndex> Dumped { get; init; } = [];
    /// <summary>Probed (known) weights scored on the host, with their exact rank within their tensor.</summary>
    public IReadOnlyList<ProbedWeight> Probed { get; init; } = [];
    /// <summary>How OverallStats' quantiles were found.</summary>
    public QuantileAccuracy OverallQuantiles { get; init; }

    /// <summary>The top-k set for the run's mode, best first within each group.</summary>
    public List<ScoredIndex> Select(int k)
    {
        if (k > MaxK) throw new ArgumentOutOfRangeException(nameof(k), $"k {k} exceeds the collected {MaxK}");
        return Mode switch
        {
            RankingMode.Global => Global.Take(k).ToList(),
            RankingMode.PerBlock => PerBlock.OrderBy(kv => kv.Key < 0 ? int.MaxValue : kv.Key).SelectMany(kv => kv.Value.Take(k)).ToList(),
            _ => ScoredTensors.SelectMany(t => TopPerTensor[t].Take(k)).ToList(),
        };
    }

    public static IReadOnlyList<TensorSelection> Group(IEnumerable<ScoredIndex> set) =>
        set.GroupBy(s => s.TensorIndex).OrderBy(g => g.Key).Select(g => new TensorSelection(g.Key, g.Select(s => s.FlatIndex).Order().ToArray())).ToList();

    /// <summary>bottom_k control: in every tensor, as many of its lowest-scoring weights as the top set took there.</summary>
    public IReadOnlyList<TensorSelection> BottomMatching(IReadOnlyList<TensorSelection> top) =>
        top.Select(t => new TensorSelection(t.TensorIndex, BottomPerTensor[t.TensorIndex].Take(t.FlatIndices.Length).Select(s => s.FlatIndex).Order().ToArray())).ToList();

    public HashSet<(int, long)> AsSet(int k) => Select(k).Select(s => (s.TensorIndex, s.FlatIndex)).ToHashSet();
}

/// <summary>How the model-wide quantiles were found: exactly (a second pass), within a radix bucket (±0.4%), or as log-histogram bin edges.</summary>
public enum QuantileAccuracy { BinEdge, Bucket, Exact }
