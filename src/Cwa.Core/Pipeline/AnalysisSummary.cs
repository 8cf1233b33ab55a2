using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>What the CLI prints after a run; the files hold the full results.</summary>
public sealed record AnalysisSummary(
    string OutDir,
    string ModelName,
    string Metric,
    string Mode,
    int TopK,
    double CalibrationLoss,
    int NumTexts,
    long NumTokens,
    IReadOnlyList<RankedWeight> TopWeights,
    IReadOnlyList<string> OutputFiles,
    IReadOnlyList<(string Label, double Value)> Results,
    IReadOnlyList<(string Phase, double Seconds)> Timings);
