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
        RankingMode mode, int maxK, bool include1D, string? dumpPath, IProgressSink progress, int threads = 0, ScoreExtras? extras = null)
    {
        var specs = backend.Specs;
        var scored = ScoredTensors(specs, metric, include1D, maxK);
        var onDevice = sources.OnDevice;
        using var dump = OpenDump(dumpPath, specs, scored, metric);
        var scorer = new TensorScorer(metric, curvature, maxK, dump, threads, extras);
        var builder = new RankingBuilder(specs, mode, maxK);
        using (var phase = progress.Start("scoring", scored.Count))
        {
            foreach (int t in scored)
            {
                var spec = specs[t];
                phase.Describe(spec.Name);
                builder.Add(t, onDevice?.Score(t, metric, maxK, scorer.Quantiles) ?? OnHost(backend, t, sources, scorer));
                phase.Advance();
            }
        }
        dump?.Commit();
        // The scores are computed again (cheap next to summarising them) to find the model-wide quantiles exactly.
        var exact = scorer.Quantiles.Refine(RankingBuilder.OverallQuantiles);
        using (var phase = progress.Start("exact model-wide quantiles", scored.Count))
            foreach (int t in scored)
            {
                if (onDevice != null) onDevice.Refine(t, metric, exact);
                else exact.Add(scorer.Compute(Input(backend, t, sources)));
                phase.Advance();
            }
        return builder.Build(scorer.Quantiles, exact);
    }

    /// <summary>The tensors this metric scores, in tensor order; k must fit the largest.</summary>
    internal static List<int> ScoredTensors(IReadOnlyList<ParameterSpec> specs, SensitivityMetric metric, bool include1D, int maxK)
    {
        var scored = Enumerable.Range(0, specs.Count).Where(i => IsScored(specs[i], metric, include1D)).ToList();
        if (scored.Count == 0) throw new CwaException($"metric {metric.Name()} has no tensor to score in this model");
        long largest = scored.Max(i => specs[i].NumElements);
        if (maxK > largest)
            throw new InputException($"--topk {maxK} is larger than the largest scored tensor ({largest} weights)");
        return scored;
    }

    /// <summary>scores.safetensors (--dump-scores): one F32 tensor per scored tensor, written in any order.</summary>
    internal static SafeTensorsWriter? OpenDump(string? path, IReadOnlyList<ParameterSpec> specs, IReadOnlyList<int> scored, SensitivityMetric metric) =>
        path == null ? null : new SafeTensorsWriter(path,
            scored.Select(i => (specs[i].Name, DType.F32, specs[i].Shape.Select(d => (long)d).ToArray())).ToList(),
            new Dictionary<string, string> { ["metric"] = metric.Name() });

    /// <summary>One tensor scored on the host from the sources (and the backend's weights), then summarised.</summary>
    private static ScoreSummary OnHost(IBackend backend, int t, ScoreSources sources, TensorScorer scorer) => scorer.Score(t, Input(backend, t, sources));

    private static TensorScoreInput Input(IBackend backend, int t, ScoreSources sources)
    {
        var spec = backend.Specs[t];
        // The CPU backend holds its weights as host arrays (read-only here); other backends copy the tensor out.
        float[] w;
        if (backend is CpuBackend cpu) w = cpu.Weights[t];
        else backend.ReadWeight(t, w = new float[spec.NumElements]);
        return new TensorScoreInput
        {
            Spec = spec,
            Weights = w,
            Gradient = sources.Gradient?[t],
            FisherSum = sources.Fisher?.Get(t),
            HessianDiag = sources.HessianDiag?[t],
            InputNorms = sources.Activations?.InputNorms(spec.Name),
            InputMaxAbs = sources.Activations?.InputMaxAbs(spec.Name),
        };
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
}
