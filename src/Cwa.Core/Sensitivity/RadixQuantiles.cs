namespace Cwa.Core.Sensitivity;

/// <summary>
/// Model-wide order statistics of all scores in one streaming pass: counts of the top 16 bits of each score's
/// order-preserving bit key (sign, exponent and 7 mantissa bits), so a quantile is known to within one bucket, a
/// relative width of 2^-7; the midpoint is reported, off by at most ±0.4%. A second pass over the same scores
/// (<see cref="Refine"/>) counts the low 16 bits inside the buckets that hold the wanted ranks, which gives the exact
/// values. (The per-tensor quantiles are exact.)
/// </summary>
public sealed class RadixQuantiles
{
    private readonly long[] _counts = new long[1 << 16];
    // Exact zeros are common (untouched embedding rows) and are counted apart, so a zero quantile is exactly 0.
    private long _zeros;

    public long Total { get; private set; }

    public void Add(ReadOnlySpan<float> scores)
    {
        long n = 0;
        foreach (float v in scores)
        {
            if (float.IsNaN(v)) continue;
            n++;
            if (v == 0) { _zeros++; continue; }
            _counts[RadixPercentiles.Key(v) >> 16]++;
        }
        Total += n;
    }

    /// <summary>
    /// Counts of all of one tensor's keys by their top 16 bits, zeros included (made by a tensor's exact percentiles,
    /// on the host or a device). The zeros, all in +0's bucket since scores are never -0 (they are absolute values,
    /// squares or products of them), are moved to the zero count.
    /// </summary>
    public void AddKeyCounts(ReadOnlySpan<long> high, long zeros)
    {
        const int positiveZero = 0x8000;
        if (high[positiveZero] < zeros) throw new InvalidOperationException("scores hold -0: the zero count does not fit +0's bucket");
        for (int b = 0; b < _counts.Length; b++)
        {
            long c = b == positiveZero ? high[b] - zeros : high[b];
            _counts[b] += c;
            Total += c;
        }
        _zeros += zeros;
        Total += zeros;
    }

    /// <summary>The value at rank ceil(q * n) (nearest rank), as its bucket's midpoint.</summary>
    public double Quantile(double q)
    {
        if (Total == 0) return double.NaN;
        long target = Math.Max(1, (long)Math.Ceiling(q * Total)), seen = 0;
        for (int b = 0; b < _counts.Length; b++)
        {
            // Negative keys fill buckets below 0x8000, positive ones from 0x8000: the zeros sit in between.
            if (b == 0x8000 && (seen += _zeros) >= target) return 0;
            seen += _counts[b];
            if (seen < target) continue;
            float lo = RadixPercentiles.FromKey((uint)b << 16), hi = RadixPercentiles.FromKey(((uint)b << 16) | 0xFFFF);
            return lo == hi ? lo : (lo + (double)hi) / 2;
        }
        return double.NaN;
    }

    /// <summary>The rank ceil(q * n) of each quantile and the bucket it falls in, for a second pass that finds the exact values.</summary>
    public RadixRefinement Refine(IReadOnlyList<double> qs)
    {
        var targets = new Dictionary<double, (int Bucket, long Rank)>();
        foreach (double q in qs)
        {
            if (Total == 0) continue;
            long target = Math.Max(1, (long)Math.Ceiling(q * Total)), seen = 0;
            for (int b = 0; b < _counts.Length; b++)
            {
                if (b == 0x8000 && (seen += _zeros) >= target) { targets[q] = (-1, 0); break; }
                if (seen + _counts[b] >= target) { targets[q] = (b, target - seen); break; }
                seen += _counts[b];
            }
        }
        return new RadixRefinement(targets);
    }
}

/// <summary>
/// The second pass of <see cref="RadixQuantiles"/>: the same scores again, of which only those in a wanted bucket
/// are counted by their low 16 bits; the wanted rank inside the bucket then names one exact float.
/// </summary>
public sealed class RadixRefinement
{
    private readonly Dictionary<double, (int Bucket, long Rank)> _targets;
    private readonly Dictionary<int, long[]> _low = new();

    internal RadixRefinement(Dictionary<double, (int Bucket, long Rank)> targets)
    {
        _targets = targets;
        foreach (var (bucket, _) in targets.Values)
            if (bucket >= 0) _low.TryAdd(bucket, new long[1 << 16]);
    }

    /// <summary>The top-16-bit buckets whose low bits this pass counts.</summary>
    public IReadOnlyList<int> Buckets => _low.Keys.Order().ToList();

    /// <summary>Low-16-bit counts of one bucket made elsewhere (a device's radix pass over one tensor).</summary>
    public void AddCounts(int bucket, ReadOnlySpan<int> low)
    {
        var into = _low[bucket];
        for (int i = 0; i < into.Length; i++) into[i] += low[i];
    }

    public void Add(ReadOnlySpan<float> scores)
    {
        if (_low.Count == 0) return;
        foreach (float v in scores)
        {
            if (float.IsNaN(v) || v == 0) continue;
            uint key = RadixPercentiles.Key(v);
            if (_low.TryGetValue((int)(key >> 16), out var low)) low[key & 0xFFFF]++;
        }
    }

    /// <summary>The exact value at rank ceil(q * n) (NaN for a quantile not asked for, or when the pass saw fewer scores).</summary>
    public double Quantile(double q)
    {
        if (!_targets.TryGetValue(q, out var t)) return double.NaN;
        if (t.Bucket < 0) return 0;
        var low = _low[t.Bucket];
        long seen = 0;
        for (int i = 0; i < low.Length; i++)
            if ((seen += low[i]) >= t.Rank) return RadixPercentiles.FromKey(((uint)t.Bucket << 16) | (uint)i);
        return double.NaN;
    }
}
