using Cwa.Core.Ranking;

namespace Cwa.Core.Sensitivity;

/// <summary>
/// What the scoring pass keeps of one tensor's scores, wherever they were computed (host or device): exact
/// statistics, its share of the model-wide histogram, and its best and worst maxK weights, best first.
/// </summary>
public sealed record ScoreSummary(TensorStats Stats, double SumSquares, LogHistogramBuilder Histogram, List<ScoredIndex> Top, List<ScoredIndex> Bottom)
{
    /// <summary>How the tensor's top 0.1% spread over rows and columns (null for 1-D tensors and device-scored ones).</summary>
    public Concentration? Concentration { get; init; }
    /// <summary>The weights --dump-scores parquet writes for this tensor (its top-N, or all of it), best first; null when none.</summary>
    public List<ScoredIndex>? Dumped { get; init; }
    /// <summary>Probed weights of this tensor (known critical weights): their score and rank within the tensor.</summary>
    public List<ProbedWeight>? Probed { get; init; }
}

/// <summary>A given weight's exact score and its rank within its tensor (1 = highest score).</summary>
public readonly record struct ProbedWeight(int TensorIndex, long FlatIndex, float Score, long RankInTensor);

/// <summary>
/// A backend that scores tensors where their gradients and weights live, returning only the summary: for an 8B
/// model on a GPU that avoids copying 32 GB of gradients and 16 GB of weights to the host.
/// </summary>
public interface IDeviceScoring
{
    /// <summary>Whether the metric is computed from this backend's own gradient sums and weights.</summary>
    bool CanScore(SensitivityMetric metric);

    /// <summary>
    /// Scores tensor t; throws naming the tensor and flat index when its gradient sum is not finite. The tensor's
    /// radix counts are added to the model-wide quantiles when given.
    /// </summary>
    ScoreSummary Score(int tensorIndex, SensitivityMetric metric, int maxK, RadixQuantiles? modelWide = null);

    /// <summary>Scores tensor t again and adds the low-16-bit counts of the refinement's buckets (exact model-wide quantiles).</summary>
    void Refine(int tensorIndex, SensitivityMetric metric, RadixRefinement refinement);

    /// <summary>Gradient sums at the given flat indices (for the CSV's gradient column).</summary>
    void ReadGradientAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values);
}
