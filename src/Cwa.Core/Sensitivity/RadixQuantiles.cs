namespace Cwa.Core.Sensitivity;

/// <summary>
/// Model-wide order statistics of all scores in one streaming pass: counts of the top 16 bits of each score's
/// order-preserving bit key (sign, exponent and 7 mantissa bits), so a quantile is known to within one bucket, a
/// relative width of 2^-7; the midpoint is reported, off by at most ±0.4%. (The per-tensor quantiles are exact.)
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
            _counts[Key(v) >> 16]++;
        }
        Total += n;
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
            float lo = FromKey((uint)b << 16), hi = FromKey(((uint)b << 16) | 0xFFFF);
            return lo == hi ? lo : (lo + (double)hi) / 2;
        }
        return double.NaN;
    }

    private static uint Key(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (bits & 0x8000_0000) != 0 ? ~bits : bits | 0x8000_0000;
    }

    private static float FromKey(uint key) => BitConverter.UInt32BitsToSingle((key & 0x8000_0000) != 0 ? key & 0x7FFF_FFFF : ~key);
}
