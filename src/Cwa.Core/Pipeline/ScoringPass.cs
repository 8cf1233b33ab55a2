using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Streams over tensors: computes one tensor's scores, feeds them to the exact stats, the histogram and the
/// bounded top/bottom-k collectors (optionally the score dump), then drops them. Memory beyond the model is one
/// score buffer plus O(k) candidates, never a list of all weights.
/// </summary>
public static class ScoringPass
{
    public static RankingResult Run(IBackend backend, ScoreSources sources, SensitivityMetric metric, ObdCurvature curvature,
        RankingMode mode, int maxK, bool include1D, string? dumpPath, IProgressSink progress, int threads = 0)
    {
        var specs = backend.Specs;
        var scored = Enumerable.Range(0, specs.Count).Where(i => IsScored(specs[i], metric, include1D)).ToList();
        if (scored.Count == 0) throw new CwaException($"metric {metric.Name()} has no tensor to score in this model");
        long largest = scored.Max(i => specs[i].NumElements);
        if (maxK > largest)
            throw new InputException($"--topk {maxK} is larger than the largest scored tensor ({largest} weights)");
        var onDevice = sources.OnDevice;
        var scores = onDevice == null ? new float[largest] : [];
        var scratch = onDevice == null ? new float[largest] : [];
        var top = new Dictionary<int, List<ScoredIndex>>();
        var bottom = new Dictionary<int, List<ScoredIndex>>();
        var global = new TopKCollector(maxK);
        var perBlock = new Dictionary<int, TopKCollector>();
        var stats = new List<TensorStats>();
        var blockAgg = new AggregateStats();
        var compAgg = new AggregateStats();
        var overallAgg = new AggregateStats();
        var histogram = new LogHistogramBuilder();
        double overallMin = double.PositiveInfinity;
        using var dump = dumpPath == null ? null : new SafeTensorsWriter(dumpPath,
            scored.Select(i => (specs[i].Name, DType.F32, specs[i].Shape.Select(d => (long)d).ToArray())).ToList(),
            new Dictionary<string, string> { ["metric"] = metric.Name() });
        using (var phase = progress.Start("scoring", scored.Count))
        {
            foreach (int t in scored)
            {
                var spec = specs[t];
                phase.Describe(spec.Name);
                var summary = onDevice?.Score(t, metric, maxK) ?? OnHost(backend, t, sources, metric, curvature, maxK, scores, scratch, dump, threads);
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
                phase.Advance();
            }
        }
        dump?.Commit();
        var overall = overallAgg.Rows()[0];
        var h = histogram.Build();
        return new RankingResult
        {
            Mode = mode,
            MaxK = maxK,
            ScoredTensors = scored,
            TopPerTensor = top,
            BottomPerTensor = bottom,
            Global = global.Result(),
            PerBlock = perBlock.ToDictionary(kv => kv.Key, kv => kv.Value.Result()),
            Stats = stats,
            PerBlockAggregates = blockAgg.Rows(),
            PerComponentAggregates = compAgg.Rows(),
            Overall = overall,
            OverallStats = new TensorStats("all", -1, "all", overall.NumWeights, overall.Mean, overall.Std, overallMin, overall.Max,
                HistogramQuantile(h, 0.5), HistogramQuantile(h, 0.95), HistogramQuantile(h, 0.99), HistogramQuantile(h, 0.999), h.Zeros, overall.Sum),
            Histogram = h,
        };
    }

    /// <summary>One tensor scored on the host from the sources (and the backend's weights), then summarised.</summary>
    private static ScoreSummary OnHost(IBackend backend, int t, ScoreSources sources, SensitivityMetric metric, ObdCurvature curvature, int maxK,
        float[] scores, float[] scratch, SafeTensorsWriter? dump, int threads)
    {
        var spec = backend.Specs[t];
        int n = (int)spec.NumElements;
        var w = new float[n];
        backend.ReadWeight(t, w);
        var input = new TensorScoreInput
        {
            Spec = spec,
            Weights = w,
            Gradient = sources.Gradient?[t],
            FisherSum = sources.Fisher?.Get(t),
            HessianDiag = sources.HessianDiag?[t],
            InputNorms = sources.Activations?.InputNorms(spec.Name),
            InputMaxAbs = sources.Activations?.InputMaxAbs(spec.Name),
        };
        var s = scores.AsSpan(0, n);
        ScoreFunctions.Compute(metric, input, s, curvature);
        dump?.Write(spec.Name, s);
        var (st, sumSq) = TensorStatsCalculator.Compute(spec, s, scratch, threads);
        var histogram = new LogHistogramBuilder();
        histogram.Add(scores, n, threads);
        var high = new TopKCollector(maxK);
        high.Add(t, s);
        var low = new TopKCollector(maxK, largest: false);
        low.Add(t, s);
        return new ScoreSummary(st, sumSq, histogram, high.Result(), low.Result());
    }

    /// <summary>
    /// Which tensors get scores: 2-D ones (1-D too with --include-1d); activation metrics score the linear layers,
    /// whose inputs the forward pass observes (every 2-D tensor but the embedding).
    /// </summary>
    public static bool IsScored(ParameterSpec spec, SensitivityMetric metric, bool include1D)
    {
        if (metric.NeedsActivations()) return spec.Is2D && spec.Role != ParameterRole.Embedding;
        return spec.Is2D || include1D;
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
