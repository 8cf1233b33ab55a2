namespace Cwa.Core.Sensitivity;

/// <summary>
/// Exact order statistics without sorting, copying or gathering. Floats map to unsigned keys whose order is the
/// floats' order: one counting pass over the top 16 key bits (65,536 buckets) says which bucket holds each wanted
/// rank, and a second pass counts the low 16 bits of the values in those few buckets, which pins each rank to one
/// exact key, hence one exact value (as the device scorer does). Memory is a few 64 K-count arrays per thread, even
/// for a 2 GB tensor whose scores are almost all zero. NaN must be excluded by the caller.
/// </summary>
internal static class RadixPercentiles
{
    public static uint Key(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    /// <summary>numpy 'linear' percentiles of values[0 .. n) (any order), computed exactly.</summary>
    /// <param name="onHigh">sees the counts of the top 16 key bits (the model-wide quantiles reuse them: no second pass)</param>
    public static void Compute(float[] values, int n, ReadOnlySpan<double> percents, Span<double> results, int threads, Action<long[]>? onHigh = null)
    {
        int parts = Math.Max(1, Math.Min(threads, (n + (1 << 20) - 1) >> 20));
        // Integer counts summed over contiguous parts: the result does not depend on the thread count.
        var high = Count(values, n, parts, 1, null)[0];
        onHigh?.Invoke(high);
        var ranks = Ranks(n, percents);
        var bucketOf = Locate(ranks, high);
        var wanted = bucketOf.Values.Select(v => v.Bucket).Distinct().Order().ToArray();
        var slot = new int[65536];
        Array.Fill(slot, -1);
        for (int w = 0; w < wanted.Length; w++) slot[wanted[w]] = w;
        var low = Count(values, n, parts, wanted.Length, slot);
        double Value(long rank)
        {
            var (b, within) = bucketOf[rank];
            var counts = low[slot[b]];
            long seen = 0;
            for (int j = 0; j < 65536; j++)
                if ((seen += counts[j]) > within) return FromKey(((uint)b << 16) | (uint)j);
            throw new InvalidOperationException("rank outside its bucket");
        }
        for (int k = 0; k < percents.Length; k++) results[k] = Interpolate(n, percents[k], Value);
        foreach (var table in low.Append(high)) Pool.Return(table);
    }

    // Count tables come from a pool: a streamed 8B run computes percentiles of 226 tensors, and fresh 512 KB tables
    // each time were garbage the collector kept until a full collection.
    private static readonly System.Buffers.ArrayPool<long> Pool = System.Buffers.ArrayPool<long>.Shared;

    private static long[] Table()
    {
        var t = Pool.Rent(65536);
        Array.Clear(t, 0, 65536);
        return t;
    }

    /// <summary>
    /// Without slot: counts of the keys' top 16 bits. With slot (top 16 bits -> table, -1 for none): per table,
    /// counts of the low 16 bits of the keys in that bucket. Parts are counted in parallel, then added.
    /// </summary>
    private static long[][] Count(float[] values, int n, int parts, int tables, int[]? slot)
    {
        var partial = new long[parts][][];
        Engine.Gemm.ParallelFor(parts, parts, p =>
        {
            var local = partial[p] = Enumerable.Range(0, tables).Select(_ => Table()).ToArray();
            int start = (int)((long)n * p / parts), end = (int)((long)n * (p + 1) / parts);
            if (slot == null)
            {
                var counts = local[0];
                for (int i = start; i < end; i++) counts[Key(values[i]) >> 16]++;
                return;
            }
            for (int i = start; i < end; i++)
            {
                uint key = Key(values[i]);
                int t = slot[key >> 16];
                if (t >= 0) local[t][key & 0xFFFF]++;
            }
        });
        var total = partial[0];
        for (int p = 1; p < parts; p++)
            for (int t = 0; t < tables; t++)
            {
                for (int j = 0; j < 65536; j++) total[t][j] += partial[p][t][j];
                Pool.Return(partial[p][t]);
            }
        return total;
    }

    /// <summary>Every rank (0-based, ascending) the percentiles need: the two order statistics each interpolates between.</summary>
    public static SortedSet<long> Ranks(long n, ReadOnlySpan<double> percents)
    {
        var ranks = new SortedSet<long>();
        foreach (double pc in percents)
        {
            double pos = pc / 100.0 * (n - 1);
            long lo = (long)Math.Floor(pos);
            ranks.Add(lo);
            ranks.Add(Math.Min(lo + 1, n - 1));
        }
        return ranks;
    }

    /// <summary>For each rank (ascending), the bucket of the counts histogram holding it and its rank within that bucket.</summary>
    public static Dictionary<long, (int Bucket, long Within)> Locate(SortedSet<long> ranks, ReadOnlySpan<long> counts)
    {
        var bucketOf = new Dictionary<long, (int Bucket, long Within)>();
        long cum = 0;
        int bucket = 0;
        foreach (long r in ranks)
        {
            while (cum + counts[bucket] <= r) cum += counts[bucket++];
            bucketOf[r] = (bucket, r - cum);
        }
        return bucketOf;
    }

    /// <summary>numpy's 'linear' percentile from exact order statistics.</summary>
    public static double Interpolate(long n, double percent, Func<long, double> orderStatistic)
    {
        double pos = percent / 100.0 * (n - 1);
        long lo = (long)Math.Floor(pos), hi = Math.Min(lo + 1, n - 1);
        double vLo = orderStatistic(lo), vHi = orderStatistic(hi);
        return vLo + (vHi - vLo) * (pos - lo);
    }

    /// <summary>The float whose Key this is.</summary>
    public static float FromKey(uint key) => BitConverter.UInt32BitsToSingle((key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key);
}
