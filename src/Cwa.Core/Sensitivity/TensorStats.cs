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
    double Sum)
{
    /// <summary>First and third quartiles (exact, numpy 'linear').</summary>
    public double Q25 { get; init; } = double.NaN;
    public double Q75 { get; init; } = double.NaN;
    /// <summary>Population skewness m3 / m2^1.5 and excess kurtosis m4 / m2^2 - 3 (scipy's defaults); NaN when all scores are equal.</summary>
    public double Skewness { get; init; } = double.NaN;
    public double ExcessKurtosis { get; init; } = double.NaN;
    public double ZeroShare => NumWeights == 0 ? double.NaN : (double)NumZeros / NumWeights;

    /// <summary>The shape from central moment sums over n values.</summary>
    public TensorStats WithMoments(double m2, double m3, double m4)
    {
        double v = m2 / NumWeights;
        return this with
        {
            Skewness = v > 0 ? m3 / NumWeights / Math.Pow(v, 1.5) : double.NaN,
            ExcessKurtosis = v > 0 ? m4 / NumWeights / (v * v) - 3 : double.NaN,
        };
    }
}

/// <summary>Histogram with log-spaced bins over positive scores; zeros counted apart.</summary>
public sealed record LogHistogram(double[] Edges, long[] Counts, long Zeros, long Negatives);
