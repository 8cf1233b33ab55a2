namespace Cwa.Core.Sensitivity;

/// <summary>
/// Streaming histogram over all scores of a model with fixed log10-spaced bins (10 per decade, 1e-30 .. 1e10;
/// values outside clamp into the end bins), zeros and negatives counted apart. Fixed bins make it mergeable
/// and independent of the order tensors arrive in.
/// </summary>
public sealed class LogHistogramBuilder
{
    public const int BinsPerDecade = 10, MinExp = -30, MaxExp = 10, BinCount = (MaxExp - MinExp) * BinsPerDecade;
    private readonly long[] _counts = new long[BinCount];
    private long _zeros, _negatives;

    public void Add(ReadOnlySpan<float> values) => Count(values, _counts, ref _zeros, ref _negatives);

    /// <summary>
    /// Counts values; with threads > 1 the work splits into fixed chunks whose integer counts are summed, so the
    /// result does not depend on scheduling. log10 runs vectorised over blocks of 4096.
    /// </summary>
    public void Add(float[] values, int length, int threads)
    {
        const int chunk = 1 << 20;
        if (length <= chunk || threads == 1)
        {
            Count(values.AsSpan(0, length), _counts, ref _zeros, ref _negatives);
            return;
        }
        var copy = values;
        int chunks = (length + chunk - 1) / chunk;
        var parts = new (long[] Counts, long Zeros, long Negatives)[chunks];
        Engine.Gemm.ParallelFor(chunks, threads > 0 ? threads : Environment.ProcessorCount, c =>
        {
            var counts = new long[_counts.Length];
            long zeros = 0, negatives = 0;
            Count(copy.AsSpan(c * chunk, Math.Min(chunk, length - c * chunk)), counts, ref zeros, ref negatives);
            parts[c] = (counts, zeros, negatives);
        });
        foreach (var (counts, zeros, negatives) in parts)
        {
            for (int i = 0; i < counts.Length; i++) _counts[i] += counts[i];
            _zeros += zeros;
            _negatives += negatives;
        }
    }

    private static void Count(ReadOnlySpan<float> values, long[] counts, ref long zeros, ref long negatives)
    {
        Span<float> logs = stackalloc float[4096];
        for (int start = 0; start < values.Length; start += logs.Length)
        {
            var block = values.Slice(start, Math.Min(logs.Length, values.Length - start));
            var l = logs[..block.Length];
            System.Numerics.Tensors.TensorPrimitives.Log10(block, l);
            for (int i = 0; i < block.Length; i++)
            {
                float v = block[i];
                if (v > 0)
                {
                    int bin = (int)MathF.Floor((l[i] - MinExp) * BinsPerDecade);
                    counts[Math.Clamp(bin, 0, counts.Length - 1)]++;
                }
                else if (v == 0) zeros++;
                else negatives++;
            }
        }
    }

    /// <summary>Adds counts made elsewhere (a device) with the same bins: bin i covers [10^(MinExp + i/10), 10^(MinExp + (i+1)/10)).</summary>
    public void AddCounts(ReadOnlySpan<long> counts, long zeros, long negatives)
    {
        if (counts.Length != BinCount) throw new ArgumentException($"expected {BinCount} bins, got {counts.Length}");
        for (int i = 0; i < counts.Length; i++) _counts[i] += counts[i];
        _zeros += zeros;
        _negatives += negatives;
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
