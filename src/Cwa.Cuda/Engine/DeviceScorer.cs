using Cwa.Core;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;
using Cwa.Cuda.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Engine;

/// <summary>
/// Scores one tensor where its gradient and weights live and returns what the host-side scoring pass would have
/// produced from the full score array: exact mean/std/min/max/zeros, exact p50/p95/p99/p99.9 (order statistics
/// from a 16+16-bit radix histogram, interpolated as numpy does), the log histogram, and the exact top-k and
/// bottom-k with the host's tie order (score, then flat index). Only a few KB per tensor cross to the host.
/// </summary>
internal sealed class DeviceScorer : IDisposable
{
    private const int MomentChunk = 1 << 16, CompactChunk = 1 << 12;
    private readonly Accelerator _acc;
    private readonly int _group;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scores;
    // The score kernel takes both weight views; for fp32 weights the unused half view points here.
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _noHalves;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, int, ArrayView<long>> _score;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<double>> _moments;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, double, ArrayView<double>> _centered;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>> _radixHigh;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>> _radixLow;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<long>, int, int, int> _histogram;
    private readonly Action<Index1D, ArrayView<float>, int, int, int, float, ArrayView<int>> _chunkCount;
    private readonly Action<Index1D, ArrayView<float>, int, int, int, float, ArrayView<int>, ArrayView<int>, ArrayView<float>, int> _compact;

    public DeviceScorer(Accelerator acc, int groupSize)
    {
        _acc = acc;
        _group = groupSize;
        _noHalves = acc.Allocate1D<ushort>(1);
        _score = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, int, ArrayView<long>>(ScoreKernels.Score);
        _moments = acc.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<double>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<double>>(ScoreKernels.Moments);
        _centered = acc.LoadStreamKernel<ArrayView<float>, int, int, double, ArrayView<double>>(ScoreKernels.CenteredMoments);
        _radixHigh = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>>(ScoreKernels.RadixHigh);
        _radixLow = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>>(ScoreKernels.RadixLow);
        _histogram = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<long>, int, int, int>(ScoreKernels.LogHistogram);
        _chunkCount = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, int, float, ArrayView<int>>(ScoreKernels.ChunkCount);
        _compact = acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, int, float, ArrayView<int>, ArrayView<int>, ArrayView<float>, int>(ScoreKernels.ChunkCompact);
    }

    /// <summary>Device bytes the score buffer takes for a model (the largest scored tensor, fp32).</summary>
    public static long Bytes(ModelConfig c) => LlamaLayout.Parameters(c).Where(s => s.Is2D).Max(s => s.NumElements) * sizeof(float);

    /// <param name="modelWide">the model-wide quantiles the tensor's radix counts are added to</param>
    public ScoreSummary Score(ParameterSpec spec, int tensorIndex, DeviceTensor gradient, DeviceTensor weight, int metric, int maxK, RadixQuantiles? modelWide = null)
    {
        int n = checked((int)spec.NumElements);
        var s = Compute(spec, gradient, weight, metric);

        var (total, min, max, zeros, negatives) = Moments(s, n);
        double mean = total / n;
        var (m2, m3, m4, squares) = Centered(s, n, mean);

        int k = Math.Min(maxK, n);
        var ranks = RadixPercentiles.Ranks(n, TensorStatsCalculator.Percents);
        if (k > 0)
        {
            ranks.Add(n - k);
            ranks.Add(k - 1);
        }
        var order = OrderStatistics(s, n, ranks, zeros, modelWide);
        var p = TensorStatsCalculator.Percents.Select(pc => RadixPercentiles.Interpolate(n, pc, r => order[r])).ToArray();

        var histogram = new LogHistogramBuilder();
        using (var counts = _acc.Allocate1D<long>(LogHistogramBuilder.BinCount))
        {
            counts.MemSetToZero();
            _histogram(n, s, counts.View, LogHistogramBuilder.BinCount, LogHistogramBuilder.MinExp, LogHistogramBuilder.BinsPerDecade);
            histogram.AddCounts(counts.GetAsArray1D(), zeros, negatives);
        }

        var top = k == 0 ? [] : Select(s, n, tensorIndex, k, order[n - k], largest: true);
        var bottom = k == 0 ? [] : Select(s, n, tensorIndex, k, order[k - 1], largest: false);
        var stats = new TensorStats(spec.Name, spec.Block, spec.Component, n, mean, Math.Sqrt(m2 / n), min, max, p[0], p[1], p[2], p[3], zeros, total) { Q25 = p[4], Q75 = p[5] }
            .WithMoments(m2, m3, m4);
        return new ScoreSummary(stats, squares, histogram, top, bottom);
    }

    /// <summary>The tensor's scores into the reused device buffer; a non-finite gradient is refused naming the tensor.</summary>
    private ArrayView<float> Compute(ParameterSpec spec, DeviceTensor gradient, DeviceTensor weight, int metric)
    {
        int n = checked((int)spec.NumElements);
        if (_scores == null || _scores.Length < n)
        {
            _scores?.Dispose();
            _scores = _acc.Allocate1D<float>(n);
        }
        var s = _scores.View.SubView(0, n);
        using (var first = _acc.Allocate1D([long.MaxValue]))
        {
            bool f32 = weight.Format == StorageFormat.F32;
            _score(n, gradient.Floats, f32 ? weight.Floats : gradient.Floats, f32 ? _noHalves.View : weight.Halves, (int)weight.Format, s, metric, first.View);
            long bad = first.GetAsArray1D()[0];
            if (bad != long.MaxValue) throw new CwaException(GradientPass.NonFiniteGradient(spec.Name, bad));
        }
        return s;
    }

    /// <summary>Second pass for exact model-wide quantiles: the tensor's scores again, counted by their low 16 bits in the wanted buckets.</summary>
    public void Refine(ParameterSpec spec, DeviceTensor gradient, DeviceTensor weight, int metric, RadixRefinement refinement)
    {
        var wanted = refinement.Buckets;
        if (wanted.Count == 0) return;
        var s = Compute(spec, gradient, weight, metric);
        var low = LowCounts(s, checked((int)spec.NumElements), wanted);
        for (int w = 0; w < wanted.Count; w++) refinement.AddCounts(wanted[w], low.AsSpan(w * 65536, 65536));
    }

    /// <summary>Counts of the low 16 key bits of the non-zero scores in each wanted top-16-bit bucket, [wanted, 65536].</summary>
    private int[] LowCounts(ArrayView<float> s, int n, IReadOnlyList<int> wanted)
    {
        var slot = Enumerable.Repeat(-1, 65536).ToArray();
        for (int w = 0; w < wanted.Count; w++) slot[wanted[w]] = w;
        using var slotView = _acc.Allocate1D(slot);
        using var counts = _acc.Allocate1D<int>(wanted.Count * 65536);
        counts.MemSetToZero();
        _radixLow(n, s, slotView.View, counts.View);
        return counts.GetAsArray1D();
    }

    private (double Total, float Min, float Max, long Zeros, long Negatives) Moments(ArrayView<float> s, int n)
    {
        int chunks = (n + MomentChunk - 1) / MomentChunk;
        using var sum = _acc.Allocate1D<double>(chunks);
        using var min = _acc.Allocate1D<float>(chunks);
        using var max = _acc.Allocate1D<float>(chunks);
        using var zeros = _acc.Allocate1D<double>(chunks);
        using var negatives = _acc.Allocate1D<double>(chunks);
        _moments(new KernelConfig(chunks, _group), s, n, MomentChunk, sum.View, min.View, max.View, zeros.View, negatives.View);
        // Chunk partials are combined in chunk order on the host: the totals do not depend on scheduling.
        double total = 0;
        foreach (double v in sum.GetAsArray1D()) total += v;
        return (total, min.GetAsArray1D().Min(), max.GetAsArray1D().Max(), (long)zeros.GetAsArray1D().Sum(), (long)negatives.GetAsArray1D().Sum());
    }

    private (double M2, double M3, double M4, double Squares) Centered(ArrayView<float> s, int n, double mean)
    {
        int chunks = (n + MomentChunk - 1) / MomentChunk;
        using var moments = _acc.Allocate1D<double>(4L * chunks);
        _centered(new KernelConfig(chunks, _group), s, n, MomentChunk, mean, moments.View);
        var m = moments.GetAsArray1D();
        double a2 = 0, a3 = 0, a4 = 0, q = 0;
        for (int c = 0; c < chunks; c++)
        {
            a2 += m[4 * c];
            a3 += m[4 * c + 1];
            a4 += m[4 * c + 2];
            q += m[4 * c + 3];
        }
        return (a2, a3, a4, q);
    }

    /// <summary>
    /// Exact order statistics (0-based ranks, ascending) from two counting passes: the top 16 key bits say which
    /// bucket holds each rank, the low 16 bits within the wanted buckets give the exact key. Zeros are not
    /// counted on the device (see ScoreKernels) and are added to +0's bucket here.
    /// </summary>
    private Dictionary<long, float> OrderStatistics(ArrayView<float> s, int n, SortedSet<long> ranks, long zeros, RadixQuantiles? modelWide)
    {
        const int zeroBucket = 0x8000;
        long[] high;
        using (var counts = _acc.Allocate1D<int>(65536))
        {
            counts.MemSetToZero();
            _radixHigh(n, s, counts.View);
            high = counts.GetAsArray1D().Select(c => (long)c).ToArray();
        }
        high[zeroBucket] += zeros;
        modelWide?.AddKeyCounts(high, zeros);
        var bucketOf = RadixPercentiles.Locate(ranks, high);
        var wanted = bucketOf.Values.Select(v => v.Bucket).Distinct().Order().ToArray();
        var slot = Enumerable.Repeat(-1, 65536).ToArray();
        for (int w = 0; w < wanted.Length; w++) slot[wanted[w]] = w;
        var low = LowCounts(s, n, wanted);
        if (slot[zeroBucket] >= 0) low[slot[zeroBucket] * 65536] += (int)zeros;
        var result = new Dictionary<long, float>();
        foreach (var (rank, (b, within)) in bucketOf)
        {
            int o = slot[b] * 65536, j = 0;
            long seen = low[o];
            while (seen <= within) seen += low[o + ++j];
            result[rank] = RadixPercentiles.FromKey(((uint)b << 16) | (uint)j);
        }
        return result;
    }

    /// <summary>
    /// The k best (largest or smallest) scores: every score strictly beyond the k-th value, then as many equal to
    /// it as are missing, lowest flat indices first, sorted as TopKCollector sorts.
    /// </summary>
    private List<ScoredIndex> Select(ArrayView<float> s, int n, int tensorIndex, int k, float kth, bool largest)
    {
        var strict = Compact(s, n, largest ? ScoreKernels.Greater : ScoreKernels.Less, kth, k);
        var ties = Compact(s, n, ScoreKernels.Equal, kth, k - strict.Count);
        var list = strict.Concat(ties).Select(c => new ScoredIndex(tensorIndex, c.Index, c.Value)).ToList();
        list.Sort((a, b) => largest ? a.CompareTo(b) : a.Score != b.Score ? a.Score.CompareTo(b.Score) : a.FlatIndex.CompareTo(b.FlatIndex));
        return list;
    }

    /// <summary>The first `limit` scores (in index order) matching (op, threshold).</summary>
    private List<(int Index, float Value)> Compact(ArrayView<float> s, int n, int op, float threshold, int limit)
    {
        if (limit <= 0) return [];
        int chunks = (n + CompactChunk - 1) / CompactChunk;
        int[] counts;
        using (var c = _acc.Allocate1D<int>(chunks))
        {
            _chunkCount(chunks, s, n, CompactChunk, op, threshold, c.View);
            counts = c.GetAsArray1D();
        }
        var offsets = new int[chunks];
        int total = 0, last = chunks - 1;
        for (int c = 0; c < chunks; c++)
        {
            offsets[c] = total;
            total += counts[c];
            if (total >= limit)
            {
                last = c;
                break;
            }
        }
        int take = Math.Min(limit, total);
        if (take == 0) return [];
        using var off = _acc.Allocate1D(offsets);
        using var index = _acc.Allocate1D<int>(take);
        using var values = _acc.Allocate1D<float>(take);
        _compact(last + 1, s, n, CompactChunk, op, threshold, off.View, index.View, values.View, take);
        var idx = index.GetAsArray1D();
        var val = values.GetAsArray1D();
        return Enumerable.Range(0, take).Select(i => (idx[i], val[i])).ToList();
    }

    public void Dispose()
    {
        _scores?.Dispose();
        _noHalves.Dispose();
    }
}
