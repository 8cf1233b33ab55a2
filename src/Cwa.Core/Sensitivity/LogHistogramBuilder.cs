namespace Cwa.Core.Sensitivity;

/// <summary>
/// Streaming histogram over all scores of a model with fixed log10-spaced bins (10 per decade, 1e-30 .. 1e10;
/// values outside clamp into the end bins), zeros and negatives counted apart. Fixed bins make it mergeable
/// and independent of the order tensors arrive in.
/// </summary>
public sealed class LogHistogramBuilder
{
    private const int BinsPerDecade = 10, MinExp = -30, MaxExp = 10;
    private readonly long[] _counts = new long[(MaxExp - MinExp) * BinsPerDecade];
    private long _zeros, _negatives;

    public void Add(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
        {
            if (v > 0)
            {
                int bin = (int)Math.Floor((Math.Log10(v) - MinExp) * BinsPerDecade);
                _counts[Math.Clamp(bin, 0, _counts.Length - 1)]++;
            }
            else if (v == 0) _zeros++;
            else _negatives++;
        }
    }

    public void Merge(LogHistogramBuilder other)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        _zeros += other._zeros;
        _negatives += other._negatives;
    }

    public LogHistogram Build()
    {
        int first = Array.FindIndex(_counts, c => c > 0), last = Array.FindLastIndex(_counts, c => c > 0);
        if (first < 0) return new LogHistogram([], [], _zeros, _negatives);
        var edges = Enumerable.Range(first, last - first + 2).Select(i => Math.Pow(10, MinExp + i / (double)BinsPerDecade)).ToArray();
        return new LogHistogram(edges, _counts[first..(last + 1)], _zeros, _negatives);
    }
}
