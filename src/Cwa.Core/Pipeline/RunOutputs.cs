using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>Writes a run's files into the out dir (DESIGN.md §4 names), each atomically.</summary>
internal sealed class RunOutputs(string outDir, string prefix)
{
    public string OutDir { get; } = outDir;
    public string PlotsDir => Path.Combine(OutDir, "plots");
    public List<(string Png, string Caption)> PlotFiles { get; } = new();

    public string PathOf(string name) => Path.Combine(OutDir, name);

    public const string MassFile = "sensitivity_mass.json";

    public void Tables(RankingResult ranking, IReadOnlyList<RankedWeight> top)
    {
        StatsJson.WriteTensors(PathOf("sensitivity_stats.json"), ranking.Stats);
        StatsJson.WriteAggregates(PathOf("sensitivity_aggregates.json"), ranking.PerBlockAggregates, ranking.PerComponentAggregates, ranking.Overall);
        JsonOutput.Write(PathOf(MassFile), SensitivityMass.Of(ranking.Stats));
        TopWeightsCsv.Write(PathOf("top_weights.csv"), top);
        if (ranking.Concentration.Count > 0)
            JsonOutput.Write(PathOf("sensitivity_concentration.json"), new
            {
                TopFraction = Concentration.TopFraction,
                Tensors = ranking.Concentration.ToDictionary(c => c.Tensor, c => c),
            });
    }

    public void RankingPlots(RankingResult ranking, string metric)
    {
        var summaries = ranking.Stats.Select(s => new TensorScoreSummary(s.Block, s.Component, s.Mean, s.Max)).ToList();
        Add(Plots.LayerComparison(Png("layer_comparison"), $"{metric}: mean score per tensor by block", summaries), "Mean score of each tensor, grouped by transformer block and component.");
        Add(Plots.Distribution(Png("sensitivity_distribution"), $"{metric}: distribution of all scores", ranking.Histogram, ranking.OverallStats, ranking.OverallQuantiles), "Histogram of every weight's score (log-spaced bins, log counts).");
        var blocks = summaries.Select(s => s.Block).Distinct().Order().ToList();
        var comps = Plots.ComponentOrder.Where(c => summaries.Any(s => s.Component == c)).ToList();
        var values = new double[blocks.Count, comps.Count];
        for (int i = 0; i < blocks.Count; i++)
            for (int j = 0; j < comps.Count; j++)
                values[i, j] = summaries.FirstOrDefault(s => s.Block == blocks[i] && s.Component == comps[j])?.Mean ?? double.NaN;
        Add(Plots.Heatmap(Png("sensitivity_heatmap"), $"{metric}: mean score, block x component",
            blocks.Select(b => b < 0 ? "other (block -1)" : $"block {b}").ToArray(), comps.Select(Plots.ShortName).ToArray(), values, "mean score (log10)", logScale: true),
            "Mean score per block and component (colour on a log scale).");
    }

    public void PerturbationPlots(PerturbationReport p, string metric)
    {
        var effects = new List<PerturbationEffect> { new("top_k", p.TopKRun.DeltaPerplexity, p.TopKRun.DeltaPerplexity, p.TopKRun.DeltaPerplexity) };
        effects.AddRange(p.Controls.Select(c => new PerturbationEffect(c.Selection, c.MeanDeltaPerplexity,
            double.IsFinite(c.Ci95Low) ? c.Ci95Low : c.MeanDeltaPerplexity, double.IsFinite(c.Ci95High) ? c.Ci95High : c.MeanDeltaPerplexity)));
        Add(Plots.PerturbationEffects(Png("perturbation_effects"), $"{metric}: {p.Kind} of k={p.TopK} ({p.Mode}) vs controls", effects),
            "Increase in held-out perplexity after perturbing the top-k and matched control sets (95% interval over random draws).");
        if (p.KSweep.Count > 0)
        {
            var series = p.KSweep.GroupBy(x => x.Selection).Select(g => new DoseResponseSeries(g.Key, g.Select(x => x.K).ToArray(), g.Select(x => x.DeltaPerplexity).ToArray())
            {
                Low = g.All(x => double.IsFinite(x.Ci95Low) && x.Ci95Low < x.Ci95High) ? g.Select(x => x.Ci95Low).ToArray() : null,
                High = g.All(x => double.IsFinite(x.Ci95Low) && x.Ci95Low < x.Ci95High) ? g.Select(x => x.Ci95High).ToArray() : null,
            }).ToList();
            var totals = p.KSweep.Where(x => x.Selection == "top_k").ToDictionary(x => x.K, x => x.WeightsTouched);
            Add(Plots.DoseResponse(Png("dose_response"), $"{metric}: {p.Kind} dose-response", series, totals),
                "Increase in held-out perplexity as k grows, top-k vs controls (shaded: 95% interval over random draws).");
        }
    }

    public void AblationPlot(AblationReport a, string metric)
    {
        int[] ranks = a.Weights.Select(w => w.Rank).ToArray();
        Add(Plots.Ablation(Png("ablation"), $"{metric}: {a.Kind} of the top-{a.N} weights", ranks,
                a.Weights.Select(w => w.DeltaPerplexityJoint).ToArray(), a.Weights.Select(w => w.SumOfIndividual).ToArray(), a.Weights.Select(w => w.DeltaPerplexityAlone).ToArray()),
            "Held-out Δ perplexity of the top-1..N weights perturbed together, against the sum of their effects alone, and each weight alone.");
    }

    public void StabilityPlot(StabilityReport s)
    {
        var labels = s.Runs.ToArray();
        Add(Plots.Heatmap(Path.Combine(PlotsDir, "stability_heatmap.png"), "Top-k Jaccard similarity across seeds", labels, labels, s.JaccardMatrix, "Jaccard", logScale: false, annotate: true, unitRange: true),
            "Jaccard similarity of the top-k sets ranked from different calibration samples.");
        if (s.JaccardAtK.Count > 0)
        {
            var series = s.JaccardAtK.GroupBy(p => p.Mode).SelectMany(g => new[]
            {
                g.All(p => p.MeanJaccardAcrossSeeds == null) ? null : new DoseResponseSeries($"{g.Key}, seeds (mean)", g.Select(p => p.K).ToArray(), g.Select(p => p.MeanJaccardAcrossSeeds ?? double.NaN).ToArray()),
                g.All(p => p.JaccardHalves == null) ? null : new DoseResponseSeries($"{g.Key}, disjoint halves", g.Select(p => p.K).ToArray(), g.Select(p => p.JaccardHalves ?? double.NaN).ToArray()),
            }).OfType<DoseResponseSeries>().ToList();
            Add(Plots.StabilityAtK(Path.Combine(PlotsDir, "stability_at_k.png"), "Top-k agreement across calibration samples", series),
                "Jaccard similarity of the top-k sets as k grows, for every ranking mode, across seeds and between disjoint halves of the texts.");
        }
    }

    private string Png(string name) => Path.Combine(PlotsDir, $"{prefix}_{name}.png");

    private void Add(IReadOnlyList<string> files, string caption) => PlotFiles.Add((files[0], caption));
}
