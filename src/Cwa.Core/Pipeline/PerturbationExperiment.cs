using Cwa.Core.Data;
using Cwa.Core.Evaluation;
using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>Held-out metrics of one perturbed set, relative to the unperturbed model.</summary>
public sealed record PerturbedRun(string Selection, int Seed, long WeightsTouched, double Nll, double Perplexity, double Accuracy, double DeltaPerplexity, double DeltaNll)
{
    /// <summary>Why a number is missing (null in JSON): the perturbed model's loss or perplexity is not finite.</summary>
    public string? Note => double.IsFinite(Perplexity) ? null : Divergence.Explain(Nll);
}

/// <summary>How a non-finite result is explained wherever it is shown (JSON note, summary, report).</summary>
public static class Divergence
{
    public const string Message = "the perturbation made the model diverge";

    /// <summary>
    /// A result for people: G5, or why there is no number. Only perturbed results can be non-finite: a non-finite
    /// calibration loss or gradient stops the run.
    /// </summary>
    public static string Show(double v) =>
        double.IsFinite(v) ? v.ToString("G5", System.Globalization.CultureInfo.InvariantCulture) : $"not finite: {Message}";

    public static string Explain(double nll) =>
        double.IsFinite(nll) ? $"{Message} (perplexity overflows: held-out NLL {nll:G6})" : $"{Message} (held-out NLL is {nll})";
}

/// <summary>Mean and 95% interval (Student t) of one control over its draws.</summary>
public sealed record ControlSummary(string Selection, int Draws, double MeanDeltaPerplexity, double Ci95Low, double Ci95High, IReadOnlyList<PerturbedRun> Runs)
{
    public string? Note => Runs.Count(r => r.Note != null) is int n and > 0 ? $"{n} of {Runs.Count} draws: {Divergence.Message}" : null;
}

public sealed record DoseResponsePoint(int K, string Selection, double DeltaPerplexity, double Ci95Low, double Ci95High);

public sealed record PerturbationReport(
    string Kind, double Scale, bool Absolute, double Probability, int? Bit, string HeldDtype, string Mode, int TopK,
    EvalMetrics Baseline, PerturbedRun TopKRun, IReadOnlyList<ControlSummary> Controls, IReadOnlyList<DoseResponsePoint> KSweep,
    double? TopOverRandomRatio, double? TopMinusRandomCi95High);

/// <summary>
/// Causal test of a ranking: perturb the top-k, re-measure held-out perplexity, and compare with controls that
/// touch the same number of weights in every tensor (random_k over several seeded draws, bottom_k). Every
/// perturbation is restored bit-exactly before the next one.
/// </summary>
public static class PerturbationExperiment
{
    public static PerturbationReport Run(LoadedModel model, IReadOnlyList<Batch> evalBatches, RankingResult ranking, AnalyzeRequest r, IProgressSink progress)
    {
        var kind = PerturbationKinds.Parse(r.Perturb ?? "zero");
        var controls = r.Controls.Select(RankingModes.ParseControl).Distinct().ToList();
        ulong seed = (ulong)r.Seeds[0];
        var settings = new PerturbationSettings(kind, r.PerturbScale, r.PerturbAbsolute, r.PerturbProb, r.Bit, model.HeldType, seed);
        settings.Validate();
        var sweep = r.KSweep.Where(k => k <= ranking.MaxK).Distinct().Order().ToList();
        int evaluations = 1 + 1 + controls.Sum(c => c == ControlKind.RandomK ? r.ControlSeeds : 1) * (1 + sweep.Count) + sweep.Count;
        using var phase = progress.Start("perturbation", evaluations * evalBatches.Count);
        var backend = model.Backend;

        var baseline = Evaluator.Run(backend, evalBatches, phase);
        PerturbedRun Measure(string label, int drawSeed, IReadOnlyList<TensorSelection> set)
        {
            var snapshot = WeightPerturber.Apply(backend, set, settings with { Seed = (ulong)drawSeed });
            try
            {
                var m = Evaluator.Run(backend, evalBatches, phase);
                return new PerturbedRun(label, drawSeed, snapshot.Count, m.Nll, m.Perplexity, m.Accuracy, m.Perplexity - baseline.Perplexity, m.Nll - baseline.Nll);
            }
            finally
            {
                WeightPerturber.Restore(backend, snapshot);
            }
        }

        (PerturbedRun Top, List<ControlSummary> Controls) AtK(int k)
        {
            var top = RankingResult.Group(ranking.Select(k));
            var topRun = Measure("top_k", (int)seed, top);
            var summaries = new List<ControlSummary>();
            foreach (var c in controls)
            {
                var runs = new List<PerturbedRun>();
                if (c == ControlKind.BottomK)
                    runs.Add(Measure("bottom_k", (int)seed, ranking.BottomMatching(top)));
                else
                    for (int d = 0; d < r.ControlSeeds; d++)
                    {
                        int drawSeed = (int)seed + 1000 + d;
                        var random = top.Select(t => new TensorSelection(t.TensorIndex,
                            RandomKSelector.Select(backend.Specs[t.TensorIndex].NumElements, t.FlatIndices.Length, (ulong)drawSeed, t.TensorIndex))).ToList();
                        runs.Add(Measure("random_k", drawSeed, random));
                    }
                summaries.Add(Summarize(c.Name(), runs));
            }
            return (topRun, summaries);
        }

        var (topRunMain, controlSummaries) = AtK(r.TopK);
        var points = new List<DoseResponsePoint>();
        foreach (int k in sweep)
        {
            var (t, cs) = k == r.TopK ? (topRunMain, controlSummaries) : AtK(k);
            points.Add(new DoseResponsePoint(k, "top_k", t.DeltaPerplexity, t.DeltaPerplexity, t.DeltaPerplexity));
            points.AddRange(cs.Select(c => new DoseResponsePoint(k, c.Selection, c.MeanDeltaPerplexity, c.Ci95Low, c.Ci95High)));
        }
        var randomSummary = controlSummaries.FirstOrDefault(c => c.Selection == "random_k");
        // The ratio is only meaningful when random damage is positive; the margin over the random interval always is.
        double? ratio = randomSummary is { MeanDeltaPerplexity: > 0 } ? topRunMain.DeltaPerplexity / randomSummary.MeanDeltaPerplexity : null;
        double? margin = randomSummary is { Draws: >= 2 } ? topRunMain.DeltaPerplexity - randomSummary.Ci95High : null;
        // The bit actually flipped (the default is the held dtype's top exponent bit), so the report says which.
        int? bit = kind == PerturbationKind.BitFlip ? r.Bit ?? HeldValueBits.DefaultBit(model.HeldType) : null;
        return new PerturbationReport(PerturbationKinds.Name(kind), r.PerturbScale, r.PerturbAbsolute, r.PerturbProb, bit, model.HeldType.ToString(),
            ranking.Mode.Name(), r.TopK, baseline, topRunMain, controlSummaries, points, ratio, margin);
    }

    private static ControlSummary Summarize(string label, List<PerturbedRun> runs)
    {
        var d = runs.Select(x => x.DeltaPerplexity).ToArray();
        double mean = d.Average();
        // One draw (bottom_k, or --control-seeds 1) has no spread to estimate: no interval rather than a zero-width one.
        if (d.Length < 2) return new ControlSummary(label, d.Length, mean, double.NaN, double.NaN, runs);
        double sd = Math.Sqrt(d.Sum(x => (x - mean) * (x - mean)) / (d.Length - 1));
        double half = StudentT975(d.Length - 1) * sd / Math.Sqrt(d.Length);
        return new ControlSummary(label, d.Length, mean, mean - half, mean + half, runs);
    }

    /// <summary>97.5% quantile of Student's t (two-sided 95% interval) for small degrees of freedom.</summary>
    private static double StudentT975(int df) => df switch
    {
        1 => 12.706, 2 => 4.303, 3 => 3.182, 4 => 2.776, 5 => 2.571, 6 => 2.447, 7 => 2.365, 8 => 2.306, 9 => 2.262,
        10 => 2.228, <= 15 => 2.131, <= 20 => 2.086, <= 30 => 2.042, _ => 1.96,
    };
}
