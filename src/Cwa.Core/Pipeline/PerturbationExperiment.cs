using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>Held-out metrics of one perturbed set, relative to the unperturbed model.</summary>
public sealed record PerturbedRun(string Selection, int Seed, long WeightsTouched, double Nll, double Perplexity, double Accuracy, double DeltaPerplexity, double DeltaNll)
{
    /// <summary>Downstream task scores with this set perturbed (--tasks).</summary>
    public IReadOnlyList<TaskResult> Tasks { get; init; } = [];
    /// <summary>Per evaluation unit (text) NLL sums, for paired comparisons; not written.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<EvalResult> Units { get; init; } = [];

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

    /// <summary>top-k minus this control, paired text by text on the same held-out texts (null when a side diverged).</summary>
    public PairedDifference? Paired { get; init; }

    public static ControlSummary Of(string label, IReadOnlyList<PerturbedRun> runs)
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

public sealed record DoseResponsePoint(int K, string Selection, double DeltaPerplexity, double Ci95Low, double Ci95High)
{
    /// <summary>Weights perturbed at this k in total (over all tensors).</summary>
    public long WeightsTouched { get; init; }
}

public sealed record PerturbationReport(
    string Kind, double Scale, bool Absolute, double Probability, int? Bit, string HeldDtype, string Mode, int TopK,
    EvalMetrics Baseline, PerturbedRun TopKRun, IReadOnlyList<ControlSummary> Controls, IReadOnlyList<DoseResponsePoint> KSweep,
    double? TopOverRandomRatio, double? TopMinusRandomCi95High)
{
    /// <summary>Downstream task scores of the unperturbed model (--tasks).</summary>
    public IReadOnlyList<TaskResult> BaselineTasks { get; init; } = [];
    /// <summary>quantize: the grid (bits, group size); null for other kinds.</summary>
    public QuantGrid? Quantization { get; init; }
    /// <summary>--quantize-all-but-top: every scored weight quantised, then all but the top-k.</summary>
    public QuantizationSplit? Split { get; init; }
}

public sealed record QuantGrid(int Bits, int GroupSize);

/// <summary>
/// The dense-and-sparse experiment: quantising every scored weight against quantising all but the top-k, and, as the
/// control, all but as many random weights per tensor. TopShare is the part of the quantisation damage (Δ perplexity)
/// that keeping the top-k in full precision removes; RandomShare the same for the random weights.
/// </summary>
public sealed record QuantizationSplit(PerturbedRun All, PerturbedRun AllButTop, PerturbedRun AllButRandom, long TopKept)
{
    public double? TopShare => Share(AllButTop);
    public double? RandomShare => Share(AllButRandom);

    private double? Share(PerturbedRun kept) =>
        All.DeltaPerplexity is > 0 and var d && double.IsFinite(kept.DeltaPerplexity) ? (d - kept.DeltaPerplexity) / d : null;
}

/// <summary>
/// Causal test of a ranking: perturb the top-k, re-measure held-out perplexity, and compare with controls that
/// touch the same number of weights in every tensor (random_k over several seeded draws, bottom_k). Every
/// perturbation is restored bit-exactly before the next one.
/// </summary>
public static class PerturbationExperiment
{
    /// <param name="tasks">the --tasks sets (read once, when the options were checked), or null</param>
    public static PerturbationReport Run(LoadedModel model, IReadOnlyList<Batch> evalBatches, RankingResult ranking, AnalyzeRequest r, IReadOnlyList<TaskSet>? tasks,
        IProgressSink progress)
    {
        var kind = PerturbationKinds.Parse(r.Perturb ?? "zero");
        var controls = r.Controls.Select(RankingModes.ParseControl).Distinct().ToList();
        ulong seed = (ulong)r.Seeds[0];
        var settings = r.PerturbationSettingsFor(kind, model.HeldType, seed);
        settings.Validate();
        var sweep = r.KSweep.Where(k => k <= ranking.MaxK).Distinct().Order().ToList();
        int evaluations = 1 + 1 + controls.Sum(c => c == ControlKind.BottomK ? 1 : r.ControlSeeds) * (1 + sweep.Count) + sweep.Count + (r.QuantizeAllButTop ? 3 : 0);
        using var phase = progress.Start("perturbation", evaluations * evalBatches.Count);
        var backend = model.Backend;

        var meter = new PerturbationMeter(backend, evalBatches, settings, phase, tasks == null ? null : new TaskSuite(tasks, model.Tokenizer, r.MaxLength));
        var baseline = meter.Baseline;
        PerturbedRun Measure(string label, int drawSeed, IReadOnlyList<TensorSelection> set) => meter.Measure(label, drawSeed, set);
        List<TensorSelection> RandomMatching(IReadOnlyList<TensorSelection> top, int drawSeed) => RandomKSelector.Matching(backend.Specs, top, drawSeed);

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
                else if (c == ControlKind.RandomKMatched)
                {
                    var drawSeeds = Enumerable.Range(0, r.ControlSeeds).Select(d => (int)seed + 2000 + d).ToList();
                    var sets = MatchedRandomSelector.Draws(backend, top, drawSeeds);
                    for (int d = 0; d < sets.Count; d++) runs.Add(Measure("random_k_matched", drawSeeds[d], sets[d]));
                }
                else
                    for (int d = 0; d < r.ControlSeeds; d++)
                    {
                        int drawSeed = (int)seed + 1000 + d;
                        runs.Add(Measure("random_k", drawSeed, RandomMatching(top, drawSeed)));
                    }
                summaries.Add(ControlSummary.Of(c.Name(), runs) with { Paired = PairedDifference.Of(topRun.Units, runs.Select(x => x.Units).ToList(), seed) });
            }
            return (topRun, summaries);
        }

        var (topRunMain, controlSummaries) = AtK(r.TopK);
        var points = new List<DoseResponsePoint>();
        foreach (int k in sweep)
        {
            var (t, cs) = k == r.TopK ? (topRunMain, controlSummaries) : AtK(k);
            points.Add(new DoseResponsePoint(k, "top_k", t.DeltaPerplexity, t.DeltaPerplexity, t.DeltaPerplexity) { WeightsTouched = t.WeightsTouched });
            points.AddRange(cs.Select(c => new DoseResponsePoint(k, c.Selection, c.MeanDeltaPerplexity, c.Ci95Low, c.Ci95High)));
        }
        QuantizationSplit? split = null;
        if (r.QuantizeAllButTop)
        {
            var top = RankingResult.Group(ranking.Select(r.TopK));
            int randomSeed = (int)seed + 1000;
            var random = RandomMatching(top, randomSeed);
            var quantised = ranking.ScoredTensors.Where(t => backend.Specs[t].Is2D).Select(t => (t, backend.Specs[t].NumElements)).ToList();
            var (all, butTop) = DenseAndSparse.Sets(quantised, top);
            var butRandom = DenseAndSparse.AllBut(quantised, random);
            split = new QuantizationSplit(Measure("quantize_all", (int)seed, all), Measure("quantize_all_but_top", (int)seed, butTop),
                Measure("quantize_all_but_random_k", randomSeed, butRandom), all.Sum(a => (long)a.FlatIndices.Length) - butTop.Sum(b => (long)b.FlatIndices.Length));
        }
        var randomSummary = controlSummaries.FirstOrDefault(c => c.Selection == "random_k");
        // The ratio is only meaningful when random damage is positive; the margin over the random interval always is.
        double? ratio = randomSummary is { MeanDeltaPerplexity: > 0 } ? topRunMain.DeltaPerplexity / randomSummary.MeanDeltaPerplexity : null;
        double? margin = randomSummary is { Draws: >= 2 } ? topRunMain.DeltaPerplexity - randomSummary.Ci95High : null;
        // The bit actually flipped (the default is the held dtype's top exponent bit), so the report says which.
        int? bit = kind == PerturbationKind.BitFlip ? r.Bit ?? HeldValueBits.DefaultBit(model.HeldType) : null;
        return new PerturbationReport(PerturbationKinds.Name(kind), r.PerturbScale, r.PerturbAbsolute, r.PerturbProb, bit, model.HeldType.ToString(),
            ranking.Mode.Name(), r.TopK, baseline, topRunMain, controlSummaries, points, ratio, margin)
        {
            Quantization = kind == PerturbationKind.Quantize ? new QuantGrid(r.QuantBits, r.QuantGroup) : null,
            BaselineTasks = meter.BaselineTasks,
            Split = split,
        };
    }
}
