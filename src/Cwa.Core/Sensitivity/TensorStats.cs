namespace Cwa.Core.Sensitivity;

/// <summary>Exact statistics of one tensor's scores (percentiles by selection, not from a sample).</summary>
public sealed record TensorStats(
    string Name,
    int Block,
    string Component,
    long NumWeights,
    double Mean,
    double Std,
    double Min,
    double Max,
    double P50,
    double P95,
    double P99,
    double P999,
    long NumZeros,
    double Sum);

/// <summary>Histogram with log-spaced bins over positive scores; zeros counted apart.</summary>
public sealed record LogHistogram(double[] Edges, long[] Counts, long Zeros, long Negatives);
