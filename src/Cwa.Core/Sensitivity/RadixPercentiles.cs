namespace Cwa.Core.Sensitivity;

/// <summary>
/// Exact order statistics without sorting or a full copy. Floats map to unsigned keys whose order is the floats'
/// order, so one counting pass over the top 16 key bits (65,536 buckets) says which bucket holds each wanted rank;
/// a second pass gathers only those buckets, and an exact selection inside them finishes. Two streaming passes
/// instead of repeated quickselects over hundreds of millions of scores. NaN must be excluded by the caller.
/// </summary>
internal static class RadixPercentiles
{
    private const int ChunkSize = 1 << 20;

    public static uint Key(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    /// <summary>numpy 'linear' percentiles of values (any order), computed exactly.</summary>
    public static void Compute(float[] values, int n, ReadOnlySpan<double> percents, Span<double> results, int threads)
    {
        // The 64 K-bucket count arrays come from a pool: a streamed 8B run computes these for 226 tensors, and fresh
        // 512 KB arrays each time were garbage the collector kept until its next full collection.
        var pool = System.Buffers.ArrayPool<long>.Shared;
        var counts = pool.Rent(65536);
        Array.Clear(counts, 0, 65536);
        int chunks = (n + ChunkSize - 1) / ChunkSize;
        var partial = new long[chunks][];
        Engine.Gemm.ParallelFor(chunks, threads, c =>
        {
            var local = partial[c] = pool.Rent(65536);
            Array.Clear(local, 0, 65536);
            for (int i = c * ChunkSize, end = Math.Min(n, (c + 1) * ChunkSize); i < end; i++) local[Key(values[i]) >> 16]++;
        });
        foreach (var p in partial)
            for (int b = 0; b < 65536; b++) counts[b] += p[b];

        var ranks = Ranks(n, percents);
        var bucketOf = Locate(ranks, counts);
        // Gather the wanted buckets in parallel: each chunk writes at offsets known from its own counts.
        var wanted = bucketOf.Values.Select(v => v.Bucket).Distinct().Order().ToArray();
        var slot = System.Buffers.ArrayPool<int>.Shared.Rent(65536);
        Array.Fill(slot, -1, 0, 65536);
        for (int w = 0; w < wanted.Length; w++) slot[wanted[w]] = w;
        var gathered = wanted.Select(b => new float[counts[b]]).ToArray();
        var offsets = new long[chunks][];
        for (int w = 0; w < wanted.Length; w++)
        {
            long at = 0;
            for (int c = 0; c < chunks; c++)
            {
                (offsets[c] ??= new long[wanted.Length])[w] = at;
                at += partial[c][wanted[w]];
            }
        }
        Engine.Gemm.ParallelFor(chunks, threads, c =>
        {
            var at = offsets[c];
            for (int i = c * ChunkSize, end = Math.Min(n, (c + 1) * ChunkSize); i < end; i++)
            {
                int w = slot[Key(values[i]) >> 16];
                if (w >= 0) gathered[w][at[w]++] = values[i];
            }
        });
        // Small buckets are sorted once; a huge one (e.g. millions of exact zeros) gets a linear-time selection per rank.
        foreach (var list in gathered.Where(l => l.Length <= 1 << 20)) Array.Sort(list);
        double Value(long rank)
        {
            var (b, within) = bucketOf[rank];
            var list = gathered[slot[b]];
            return list.Length <= 1 << 20 ? list[within] : Selection.Select(list, (int)within);
        }
        for (int k = 0; k < percents.Length; k++) results[k] = Interpolate(n, percents[k], Value);
        foreach (var p in partial) pool.Return(p);
        pool.Return(counts);
        System.Buffers.ArrayPool<int>.Shared.Return(slot);
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
