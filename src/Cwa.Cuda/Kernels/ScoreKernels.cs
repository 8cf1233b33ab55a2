using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// Scoring one tensor on the device: the score itself, chunked exact moments, a two-level radix histogram for
/// exact order statistics, the model-wide log histogram, and order-preserving compaction of the candidates
/// around a threshold. Counts use integer atomics (order-free, so deterministic); sums use fixed chunks and
/// group trees. Exact zeros, which can be most of an embedding's scores, are left out of the atomic passes and
/// added on the host from the moments' zero count, so one hot counter never serialises the whole tensor.
/// </summary>
public static class ScoreKernels
{
    public const int GradXWeight = 0, GradSquared = 1;
    public const int Greater = 0, Less = 1, Equal = 2;
    public const int MaxGroup = GroupReduce.MaxGroup;

    /// <summary>Unsigned key whose order is the float order (Core's RadixPercentiles.Key).</summary>
    public static uint Key(float v)
    {
        uint bits = Interop.FloatAsInt(v);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    private static bool IsZero(float v) => (Interop.FloatAsInt(v) & 0x7FFFFFFFu) == 0;

    /// <summary>s = |g * w| or g^2 (the host's formulas), and the smallest index of a non-finite gradient into first[0].</summary>
    public static void Score(Index1D i, ArrayView<float> g, ArrayView<float> wF, ArrayView<ushort> wH, int wFormat, ArrayView<float> s, int metric, ArrayView<long> first)
    {
        float gv = g[i];
        if ((Interop.FloatAsInt(gv) & 0x7F800000u) == 0x7F800000u) Atomic.Min(ref first[0], (long)(int)i);
        if (metric == GradSquared) s[i] = gv * gv;
        else s[i] = MathF.Abs(gv * (wFormat < 0 ? wF[i] : HalfBits.ToFloat(wH[i], wFormat)));
    }

    /// <summary>Per chunk of `chunk` scores: sum, min, max, number of zeros and of negatives (one group per chunk).</summary>
    public static void Moments(ArrayView<float> s, int n, int chunk, ArrayView<double> sum, ArrayView<float> min, ArrayView<float> max,
        ArrayView<double> zeros, ArrayView<double> negatives)
    {
        var shd = SharedMemory.Allocate<double>(MaxGroup);
        var shf = SharedMemory.Allocate<float>(MaxGroup);
        int c = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long start = (long)c * chunk, end = Math.Min(n, start + chunk);
        double acc = 0, z = 0, neg = 0;
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        for (long i = start + t; i < end; i += g)
        {
            float v = s[i];
            acc += v;
            lo = MathF.Min(lo, v);
            hi = MathF.Max(hi, v);
            if (v == 0) z += 1;
            else if (v < 0) neg += 1;
        }
        acc = GroupReduce.Sum(shd, acc);
        z = GroupReduce.Sum(shd, z);
        neg = GroupReduce.Sum(shd, neg);
        lo = GroupReduce.Min(shf, lo);
        hi = GroupReduce.Max(shf, hi);
        if (t != 0) return;
        sum[c] = acc;
        zeros[c] = z;
        negatives[c] = neg;
        min[c] = lo;
        max[c] = hi;
    }

    /// <summary>Per chunk: sums of (s - mean)^2, ^3, ^4 and of s^2 in double (moments[4c .. 4c+3]).</summary>
    public static void CenteredMoments(ArrayView<float> s, int n, int chunk, double mean, ArrayView<double> moments)
    {
        var shd = SharedMemory.Allocate<double>(MaxGroup);
        int c = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        long start = (long)c * chunk, end = Math.Min(n, start + chunk);
        double a2 = 0, a3 = 0, a4 = 0, q = 0;
        for (long i = start + t; i < end; i += g)
        {
            double v = s[i], d = v - mean, d2 = d * d;
            a2 += d2;
            a3 += d2 * d;
            a4 += d2 * d2;
            q += v * v;
        }
        a2 = GroupReduce.Sum(shd, a2);
        a3 = GroupReduce.Sum(shd, a3);
        a4 = GroupReduce.Sum(shd, a4);
        q = GroupReduce.Sum(shd, q);
        if (t != 0) return;
        moments[4 * c] = a2;
        moments[4 * c + 1] = a3;
        moments[4 * c + 2] = a4;
        moments[4 * c + 3] = q;
    }

    /// <summary>counts[key >> 16]++ for every non-zero score.</summary>
    public static void RadixHigh(Index1D i, ArrayView<float> s, ArrayView<int> counts)
    {
        float v = s[i];
        if (!IsZero(v)) Atomic.Add(ref counts[(int)(Key(v) >> 16)], 1);
    }

    /// <summary>For non-zero scores in a wanted top-16-bit bucket (slot >= 0): counts[slot, key &amp; 0xFFFF]++.</summary>
    public static void RadixLow(Index1D i, ArrayView<float> s, ArrayView<int> slot, ArrayView<int> counts)
    {
        float v = s[i];
        if (IsZero(v)) return;
        uint k = Key(v);
        int sl = slot[(int)(k >> 16)];
        if (sl >= 0) Atomic.Add(ref counts[sl * 65536 + (int)(k & 0xFFFFu)], 1);
    }

    /// <summary>Positive scores into log10 bins: bin = floor((log10 v - minExp) * perDecade), clamped (LogHistogramBuilder's bins).</summary>
    public static void LogHistogram(Index1D i, ArrayView<float> s, ArrayView<long> counts, int bins, int minExp, int perDecade)
    {
        float v = s[i];
        if (!(v > 0)) return;
        int bin = (int)MathF.Floor((MathF.Log10(v) - minExp) * perDecade);
        Atomic.Add(ref counts[Math.Max(0, Math.Min(bins - 1, bin))], 1L);
    }

    private static bool Match(float v, int op, float threshold) => op == Greater ? v > threshold : op == Less ? v < threshold : v == threshold;

    /// <summary>counts[c] = how many scores of chunk c match (op, threshold); one thread per chunk.</summary>
    public static void ChunkCount(Index1D c, ArrayView<float> s, int n, int chunk, int op, float threshold, ArrayView<int> counts)
    {
        long start = (long)(int)c * chunk, end = Math.Min(n, start + chunk);
        int k = 0;
        for (long i = start; i < end; i++)
            if (Match(s[i], op, threshold)) k++;
        counts[c] = k;
    }

    /// <summary>Writes the matches of chunk c in index order from offsets[c] on, the first `limit` overall only.</summary>
    public static void ChunkCompact(Index1D c, ArrayView<float> s, int n, int chunk, int op, float threshold, ArrayView<int> offsets,
        ArrayView<int> index, ArrayView<float> values, int limit)
    {
        long start = (long)(int)c * chunk, end = Math.Min(n, start + chunk);
        int o = offsets[c];
        for (long i = start; i < end && o < limit; i++)
        {
            float v = s[i];
            if (!Match(v, op, threshold)) continue;
            index[o] = (int)i;
            values[o] = v;
            o++;
        }
    }
}
