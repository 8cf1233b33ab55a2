namespace Cwa.Core;

/// <summary>
/// Small deterministic generator (SplitMix64). We use our own rather than System.Random so that seeds give the
/// same streams on every .NET version and platform: reproducibility of rankings and controls depends on it.
/// </summary>
public struct SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>Derives an independent stream from a seed and any number of stream labels.</summary>
    public static SplitMix64 For(ulong seed, params ReadOnlySpan<long> streams)
    {
        var g = new SplitMix64(seed);
        foreach (long s in streams)
            g = new SplitMix64(g.NextULong() ^ (ulong)s * 0x9E3779B97F4A7C15UL);
        return g;
    }

    public ulong NextULong()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n) without modulo bias (Lemire's method).</summary>
    public long NextLong(long n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        retry:
        ulong x = NextULong();
        UInt128 m = (UInt128)x * (ulong)n;
        ulong low = (ulong)m;
        if (low < (ulong)n)
        {
            ulong t = (0UL - (ulong)n) % (ulong)n;
            if (low < t) goto retry;
        }
        return (long)(ulong)(m >> 64);
    }

    /// <summary>Standard normal by Box-Muller (one value per call; simplicity over speed).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble();
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
