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
    IReadOnlyList<ResultValue> Results,
    IReadOnlyList<(string Phase, double Seconds)> Timings);

/// <summary>One headline result: Key in the manifest (snake_case, for jq and pandas), Label for people.</summary>
public sealed record ResultValue(string Key, string Label, double Value);
