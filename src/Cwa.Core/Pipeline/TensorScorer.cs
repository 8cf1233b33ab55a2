using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Scores one tensor on the host and keeps only its summary: exact statistics, its share of the log histogram, its
/// best and worst maxK weights (and the optional score dump). The score buffer is reused from tensor to tensor.
/// </summary>
internal sealed class TensorScorer(SensitivityMetric metric, ObdCurvature curvature, int maxK, SafeTensorsWriter? dump, int threads, ScoreExtras? extras = null)
{
    private float[] _scores = [];

    public SensitivityMetric Metric => metric;
    /// <summary>Model-wide quantiles of every score summarised here (a device-scored tensor adds its own radix counts).</summary>
    public RadixQuantiles Quantiles { get; } = new();
    public ObdCurvature Curvature => curvature;

    /// <summary>A score buffer of at least n values (reused; grown when a larger tensor comes).</summary>
    public float[] Buffer(long n) => _scores.Length >= n ? _scores : _scores = new float[n];

    /// <summary>Drops the buffer (a streamed run frees the 2 GB buffer of a vocabulary tensor before the next phase).</summary>
    public void Release() => _scores = [];

    public ScoreSummary Score(int t, TensorScoreInput input) => Summarise(t, input.Spec, Buffer(input.Spec.NumElements), Compute(input).Length);

    /// <summary>The tensor's scores only (in the reused buffer): what a second pass for exact quantiles reads again.</summary>
    public ReadOnlySpan<float> Compute(TensorScoreInput input)
    {
        int n = (int)input.Spec.NumElements;
        var scores = Buffer(n).AsSpan(0, n);
        ScoreFunctions.Compute(metric, input, scores, curvature);
        return scores;
    }

    /// <summary>The summary of scores[0 .. n) of tensor t (already computed, e.g. chunk by chunk).</summary>
    public ScoreSummary Summarise(int t, ParameterSpec spec, float[] scores, int n)
    {
        var s = scores.AsSpan(0, n);
        dump?.Write(spec.Name, s);
        var (st, sumSq) = TensorStatsCalculator.Compute(spec, scores, n, threads, Quantiles);
        var histogram = new LogHistogramBuilder();
        histogram.Add(scores, n, threads);
        var high = TopKCollector.Best(maxK, largest: true, t, scores, n, threads);
        var low = TopKCollector.Best(maxK, largest: false, t, scores, n, threads);
        return new ScoreSummary(st, sumSq, histogram, high, low) { Concentration = Concentration.Of(spec, t, scores, n, threads, st.P999), Dumped = extras?.Parquet?.Collect(t, spec, s), Probed = Probe(t, s) };
    }

    /// <summary>Score and rank within the tensor (1 = best; NaN ranks last) of the probed weights of tensor t.</summary>
    private List<ProbedWeight>? Probe(int t, ReadOnlySpan<float> s)
    {
        if (extras?.Probes is not { } probes || !probes.TryGetValue(t, out var flats)) return null;
        var result = new List<ProbedWeight>(flats.Length);
        foreach (long f in flats)
        {
            float v = s[(int)f];
            long above = 0;
            if (float.IsNaN(v)) above = s.Length - 1;
            else
                foreach (float x in s)
                    if (x > v) above++;
            result.Add(new ProbedWeight(t, f, v, above + 1));
        }
        return result;
    }
}

/// <summary>
/// Combines per-tensor summaries into the ranking result. Summaries may arrive in any order (a streamed run
/// completes its last block first); everything order-sensitive is done in tensor order, so the result is the same.
/// </summary>
internal sealed class RankingBuilder(IReadOnlyList<ParameterSpec> specs, RankingMode mode, int maxK)
{
    private readonly SortedDictionary<int, ScoreSummary> _summaries = new();

    public void Add(int t, ScoreSummary summary) => _summaries.Add(t, summary);

    /// <summary>The model-wide quantiles reported in OverallStats (a second scoring pass finds them exactly).</summary>
    public static readonly double[] OverallQuantiles = [0.5, 0.95, 0.99, 0.999];

    /// <param name="quantiles">model-wide radix counts of every scored weight (null: the bin edges of the histogram are used)</param>
    /// <param name="exact">the second pass over the same scores, when one was run</param>
    public RankingResult Build(RadixQuantiles? quantiles = null, RadixRefinement? exact = null)
    {
        var top = new Dictionary<int, List<ScoredIndex>>();
        var bottom = new Dictionary<int, List<ScoredIndex>>();
        var global = new TopKCollector(maxK);
        var perBlock = new Dictionary<int, TopKCollector>();
        var stats = new List<TensorStats>();
        var blockAgg = new AggregateStats();
        var compAgg = new AggregateStats();
        var overallAgg = new AggregateStats();
        var histogram = new LogHistogramBuilder();
        var concentration = new List<Concentration>();
        var dumped = new List<ScoredIndex>();
        var probed = new List<ProbedWeight>();
        double overallMin = double.PositiveInfinity;
        foreach (var (t, summary) in _summaries)
        {
            if (summary.Concentration is { } c0) concentration.Add(c0);
            if (summary.Dumped is { } d) dumped.AddRange(d);
            if (summary.Probed is { } p) probed.AddRange(p);
            var spec = specs[t];
            var st = summary.Stats;
            stats.Add(st);
            blockAgg.Add(spec.Block < 0 ? "other" : $"block {spec.Block}", st, summary.SumSquares);
            compAgg.Add(spec.Component, st, summary.SumSquares);
            overallAgg.Add("all", st, summary.SumSquares);
            overallMin = Math.Min(overallMin, st.Min);
            histogram.Merge(summary.Histogram);
            top[t] = summary.Top;
            bottom[t] = summary.Bottom;
            var block = perBlock.TryGetValue(spec.Block, out var c) ? c : perBlock[spec.Block] = new TopKCollector(maxK);
            foreach (var cand in summary.Top)
            {
                global.Offer(cand);
                block.Offer(cand);
            }
        }
        var overall = overallAgg.Rows()[0];
        var h = histogram.Build();
        bool precise = quantiles != null && quantiles.Total == overall.NumWeights;
        var accuracy = !precise ? QuantileAccuracy.BinEdge : exact != null ? QuantileAccuracy.Exact : QuantileAccuracy.Bucket;
        double Q(double q) => accuracy switch
        {
            QuantileAccuracy.Exact => exact!.Quantile(q),
            QuantileAccuracy.Bucket => quantiles!.Quantile(q),
            _ => HistogramQuantile(h, q),
        };
        return new RankingResult
        {
            Mode = mode,
            MaxK = maxK,
            ScoredTensors = _summaries.Keys.ToList(),
            TopPerTensor = top,
            BottomPerTensor = bottom,
            Global = global.Result(),
            PerBlock = perBlock.ToDictionary(kv => kv.Key, kv => kv.Value.Result()),
            Stats = stats,
            PerBlockAggregates = blockAgg.Rows(),
            PerComponentAggregates = compAgg.Rows(),
            Overall = overall,
            OverallStats = new TensorStats("all", -1, "all", overall.NumWeights, overall.Mean, overall.Std, overallMin, overall.Max,
                Q(0.5), Q(0.95), Q(0.99), Q(0.999), h.Zeros, overall.Sum),
            OverallQuantiles = accuracy,
            Histogram = h,
            Concentration = concentration,
            Dumped = dumped,
            Probed = probed,
        };
    }

    /// <summary>Model-wide quantiles for the plot's summary box, from the histogram (bin upper edge): per-tensor ones are exact.</summary>
    private static double HistogramQuantile(LogHistogram h, double q)
    {
        long total = h.Zeros + h.Counts.Sum();
        if (total == 0) return double.NaN;
        long target = (long)Math.Ceiling(q * total), seen = h.Zeros;
        if (seen >= target) return 0;
        for (int i = 0; i < h.Counts.Length; i++)
        {
            seen += h.Counts[i];
            if (seen >= target) return h.Edges[i + 1];
        }
        return h.Edges[^1];
    }
}
