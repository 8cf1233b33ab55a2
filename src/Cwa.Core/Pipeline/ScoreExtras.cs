using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>
/// What the main scoring pass keeps beyond the ranking, while each tensor's scores exist: the weights a Parquet
/// dump writes, and the exact score and in-tensor rank of given weights (known critical weights), by tensor index.
/// Stability re-runs pass none.
/// </summary>
public sealed record ScoreExtras(DumpSelection? Parquet, IReadOnlyDictionary<int, long[]>? Probes);
