using Cwa.Core.Data;
using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>One of the top-N weights: its effect alone, and the effect of the top-1..Rank perturbed together.</summary>
public sealed record AblatedWeight(int Rank, string Tensor, long Row, long Col, float Score, double DeltaPerplexityAlone, double DeltaPerplexityJoint,
    double SumOfIndividual)
{
    /// <summary>Joint effect minus the sum of the individual ones: positive when the weights matter more together.</summary>
    public double Interaction => DeltaPerplexityJoint - SumOfIndividual;
}

public sealed record AblationReport(string Kind, int N, double BaselinePerplexity, IReadOnlyList<AblatedWeight> Weights)
{
    public string? Note => Weights.Any(w => !double.IsFinite(w.DeltaPerplexityAlone) || !double.IsFinite(w.DeltaPerplexityJoint)) ? Divergence.Message : null;
}

/// <summary>
/// --ablate-each N: the N highest-scoring weights of the model (the global ranking), each perturbed alone and
/// restored, then the top-1, top-2, ... top-N perturbed jointly: is the damage carried by single weights, and do
/// they add up? 2N + 1 evaluations of the held-out texts.
/// </summary>
public static class SingleWeightAblation
{
    public static AblationReport Run(LoadedModel model, IReadOnlyList<Batch> evalBatches, RankingResult ranking, AnalyzeRequest r, IProgressSink progress)
    {
        var kind = PerturbationKinds.Parse(r.Perturb ?? "zero");
        var settings = r.PerturbationSettingsFor(kind, model.HeldType, (ulong)r.Seeds[0]);
        var top = ranking.Global.Take(r.AblateEach).ToList();
        progress.Info($"--ablate-each {top.Count}: {2 * top.Count + 1} evaluations of the held-out texts ({evalBatches.Count} batches each)");
        using var phase = progress.Start("single-weight ablation", (2 * top.Count + 1) * evalBatches.Count);
        var meter = new PerturbationMeter(model.Backend, evalBatches, settings, phase);
        var specs = model.Backend.Specs;
        int seed = r.Seeds[0];
        var alone = top.Select(s => meter.Measure("alone", seed, [new TensorSelection(s.TensorIndex, [s.FlatIndex])]).DeltaPerplexity).ToList();
        var weights = new List<AblatedWeight>();
        double sum = 0;
        for (int i = 0; i < top.Count; i++)
        {
            sum += alone[i];
            var joint = meter.Measure("joint", seed, RankingResult.Group(top.Take(i + 1))).DeltaPerplexity;
            var s = top[i];
            int cols = specs[s.TensorIndex].Cols;
            weights.Add(new AblatedWeight(i + 1, specs[s.TensorIndex].Name, s.FlatIndex / cols, s.FlatIndex % cols, s.Score, alone[i], joint, sum));
        }
        return new AblationReport(PerturbationKinds.Name(kind), top.Count, meter.Baseline.Perplexity, weights);
    }
}
