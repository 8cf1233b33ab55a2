using System.Text.Json.Nodes;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>Everything a finished run knows, for the documents that describe it.</summary>
internal sealed record RunFacts(
    AnalyzeRequest Request, DateTimeOffset Start, PhaseTimer Timer, SensitivityMetric Metric, RankingMode Mode, LoadedModel Model,
    CalibrationData Data, ScoreSources Sources, RankingResult Ranking, IReadOnlyList<RankedWeight> Top, IReadOnlyList<SuperWeightLayer> SuperWeights,
    PerturbationReport? Perturbation, StabilityReport? Stability, JsonObject Config, string DtypeName, IReadOnlyList<ResultValue> Results,
    MemoryMonitor Memory, Validation.KnownWeightReport? Known = null);

/// <summary>report.html and experiment_manifest.json of a run (the manifest last: it hashes every other file).</summary>
internal static class RunDocuments
{
    public static void WriteReport(string path, RunFacts f, IReadOnlyList<(string Png, string Caption)> plots)
    {
        var (r, timer, metric, mode, model, data, sources, ranking, top, superWeights, pert, stability, dtypeName, results) =
            (f.Request, f.Timer, f.Metric, f.Mode, f.Model, f.Data, f.Sources, f.Ranking, f.Top, f.SuperWeights, f.Perturbation, f.Stability, f.DtypeName, f.Results);
        HtmlReport.Write(path, new HtmlReportModel
        {
            Title = $"CriticalWeights: {metric.Name()} on {model.DisplayName}",
            Summary = [
                ("date", f.Start.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture)),
                ("device", model.Backend.DeviceDescription is { } gpu ? $"{model.Backend.Name} ({gpu})" : model.Backend.Name),
                ("cwa commit", ExperimentManifest.GitCommit() ?? "unknown (not run from a git checkout)"),
                ("model", model.DisplayName), ("architecture", $"{model.Config.Architecture} ({model.Config.ModelType}), {model.Config.NumLayers} layers, hidden {model.Config.HiddenSize}"),
                ("parameters", model.ParameterCount.ToString("N0")), ("weights held as", dtypeName),
                ("metric / mode / k", $"{metric.Name()} / {mode.Name()} / {r.TopK}"),
                ("calibration", $"{data.Source}: {sources.CalibrationSequences} sequences, {sources.CalibrationTokens} target tokens"),
                .. results.Select(x => (x.Label, Divergence.Show(x.Value))),
            ],
            TopWeights = top,
            Stats = ranking.Stats,
            SuperWeights = superWeights,
            Concentration = ranking.Concentration,
            Mass = SensitivityMass.Of(ranking.Stats),
            Perturbation = pert == null ? [] : [
                ("perturbation", $"{pert.Kind} (scale {pert.Scale}, prob {pert.Probability}{(pert.Bit is int b ? $", bit {b}" : "")}{(pert.Quantization is { } q ? $", {q.Bits}-bit RTN grid, groups of {q.GroupSize}" : "")}, held {pert.HeldDtype})"),
                ("baseline perplexity", pert.Baseline.Perplexity.ToString("G5")),
                ("top_k perplexity", pert.TopKRun.Note ?? $"{pert.TopKRun.Perplexity:G5} (Δ {pert.TopKRun.DeltaPerplexity:G5}, {pert.TopKRun.WeightsTouched} weights)"),
                .. pert.Controls.Select(c => (c.Selection, c.Note ?? (c.Draws < 2 ? $"Δ {c.MeanDeltaPerplexity:G5} (one draw, no interval)"
                    : $"Δ {c.MeanDeltaPerplexity:G5} (95% CI {c.Ci95Low:G4} .. {c.Ci95High:G4}, {c.Draws} draws)"))),
                .. pert.KSweep.GroupBy(x => x.K).Select(g => ($"k-sweep, k = {g.Key} ({g.First(x => x.Selection == "top_k").WeightsTouched:N0} weights)",
                    string.Join("; ", g.Select(x => $"{x.Selection} Δ {Divergence.Show(x.DeltaPerplexity)}" +
                        (x.Selection != "top_k" && x.Ci95Low < x.Ci95High ? $" ({x.Ci95Low:G3} .. {x.Ci95High:G3})" : ""))))),
                .. pert.Controls.Where(c => c.Paired != null).Select(c => ($"top_k − {c.Selection}, paired per text",
                    $"ΔNLL {c.Paired!.MeanNllDifference:G4} (95% bootstrap CI {c.Paired.Ci95Low:G4} .. {c.Paired.Ci95High:G4}; {c.Paired.Units} texts, {c.Paired.Resamples} resamples; top_k worse on {c.Paired.ShareOfUnitsWorse:P0} of texts)")),
                .. (pert.Split is { } split ? new[] {
                    ("quantise every scored weight", split.All.Note ?? $"Δ {split.All.DeltaPerplexity:G5} ({split.All.WeightsTouched} weights)"),
                    ("quantise all but the top-k", split.AllButTop.Note ?? $"Δ {split.AllButTop.DeltaPerplexity:G5} ({split.TopKept} weights kept)"),
                    ("quantise all but random-k", split.AllButRandom.Note ?? $"Δ {split.AllButRandom.DeltaPerplexity:G5} (as many random weights kept per tensor)"),
                    ("share of the damage the top-k carry", split.TopShare is double share ? $"{share:P1} (random-k: {split.RandomShare:P1})" : "n/a (quantising everything did not raise perplexity)"),
                } : []),
            ],
            KnownWeights = f.Known is not { } kw ? [] : [
                ("known weights", kw.Note ?? $"{kw.Weights.Count} from {kw.Origin}"),
                .. kw.Weights.Count == 0 ? [] : new[] { ("recall@k (per_layer / global / per_block)", $"{kw.RecallPerLayer:P0} / {kw.RecallGlobal:P0} / {kw.RecallPerBlock:P0} at k = {kw.TopK}") },
                .. kw.Weights.Select(w => (w.Label, !w.Scored ? "tensor not scored by this metric"
                    : $"{w.Tensor} ({w.Row}, {w.Col}): {(w.RankInTensor is long rank ? $"score {w.Score:G4}, rank {rank:N0} of {w.TensorSize:N0} in its tensor" : "scored on the device (rank not computed)")}; " +
                      $"in top-k: per_layer {(w.InTopKPerLayer ? "yes" : "no")}, global {(w.InTopKGlobal ? "yes" : "no")}, per_block {(w.InTopKPerBlock ? "yes" : "no")}")),
            ],
            Stability = stability == null ? [] : [
                ("mean Jaccard across seeds", stability.MeanJaccardAcrossSeeds.ToString("G4")),
                .. stability.Pairs.Select(p => ($"{p.A} vs {p.B}", $"Jaccard {p.Jaccard:G4}, overlap {p.Overlap:G4}, Spearman {p.SpearmanTensorMeans:G4}")),
                .. (stability.DisjointHalves is { } h ? new[] { ("disjoint halves", $"Jaccard {h.Jaccard:G4}, overlap {h.Overlap:G4}, Spearman {h.SpearmanTensorMeans:G4}") } : []),
                .. stability.JaccardAtK.GroupBy(p => p.Mode).Select(g => ($"Jaccard at k, {g.Key}",
                    string.Join(", ", g.Select(p => $"k={p.K}: {(p.MeanJaccardAcrossSeeds is double s ? s.ToString("G3", System.Globalization.CultureInfo.InvariantCulture) : "-")}" +
                        $"{(p.JaccardHalves is double hv ? $" (halves {hv:G3})" : "")}")))),
                .. stability.RankCorrelations.Select(c => ($"rank correlation of the top-{r.TopK} lists, {c.Mode}, {c.A} vs {c.B}", c.Spearman.ToString("G4", System.Globalization.CultureInfo.InvariantCulture))),
            ],
            Timings = timer.Phases.Select(p => (p.Phase, $"{p.Seconds:F2} s")).ToList(),
            Plots = plots,
        });
    }

    public static void WriteManifest(string outDir, RunFacts f)
    {
        var (r, start, timer, metric, mode, model, data, sources, ranking, top, pert, config, dtypeName, results) =
            (f.Request, f.Start, f.Timer, f.Metric, f.Mode, f.Model, f.Data, f.Sources, f.Ranking, f.Top, f.Perturbation, f.Config, f.DtypeName, f.Results);
        var resultsJson = new JsonObject();
        var notes = new JsonArray();
        void Put(string key, double v)
        {
            resultsJson[key] = JsonOutput.Number(v);
            if (!double.IsFinite(v)) notes.Add($"{key} is null: {(pert != null ? Divergence.Message : "not finite")}");
        }
        foreach (var x in results) Put(x.Key, x.Value);
        if (pert?.TopOverRandomRatio is double ratio) Put("top_over_random_delta_ppl_ratio", ratio);
        if (pert?.TopMinusRandomCi95High is double margin) Put("top_minus_random_ci95_high_delta_ppl", margin);
        if (notes.Count > 0) resultsJson["notes"] = notes;
        resultsJson["num_selected_weights"] = top.Count;
        // Model-wide score quantiles (nearest rank over every scored weight), with how they were found.
        var q = ranking.OverallStats;
        resultsJson["overall_score_quantiles"] = new JsonObject
        {
            ["method"] = ranking.OverallQuantiles switch
            {
                QuantileAccuracy.Exact => "exact", QuantileAccuracy.Bucket => "radix_bucket_midpoint_within_0.4pct", _ => "histogram_bin_upper_edge",
            },
            ["p50"] = JsonOutput.Number(q.P50), ["p95"] = JsonOutput.Number(q.P95), ["p99"] = JsonOutput.Number(q.P99), ["p99_9"] = JsonOutput.Number(q.P999),
        };
        if (sources.ForwardBackwardSeconds > 0)
        {
            resultsJson["forward_backward_seconds"] = sources.ForwardBackwardSeconds;
            resultsJson["forward_backward_tflops"] = sources.ForwardBackwardFlops / sources.ForwardBackwardSeconds / 1e12;
        }
        // Peak memory until the manifest is written: anonymous memory (what the run needs) and the whole resident set
        // (which also counts the page cache of the memory-mapped weights).
        resultsJson["peak_rss_anon_bytes"] = f.Memory.PeakAnonymousBytes;
        resultsJson["peak_rss_bytes"] = MemoryMonitor.PeakResidentBytes;
        resultsJson["layer_streaming"] = model.Backend is Engine.StreamedBackend;
        if (sources.StageSeconds is { Count: > 0 } stages)
            resultsJson["layer_major_seconds"] = new JsonObject(stages.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)Math.Round(s.Value, 3))));
        if (sources.BackwardActivations != null) resultsJson["layer_major_backward"] = sources.BackwardActivations;
        if (model.MemoryPlan is { } plan) resultsJson["memory_estimate_bytes"] = plan.Total;
        resultsJson["skipped_batches"] = new JsonArray(sources.SkippedBatches.Select(b => (JsonNode)b).ToArray());
        new ExperimentManifest
        {
            ExperimentName = r.ExperimentName ?? $"{metric.Name()}_{mode.Name()}_k{r.TopK}",
            Start = start,
            Config = config,
            Model = WithScored(model.ManifestEntry(), ranking.ScoredTensors.Count),
            Data = new JsonObject
            {
                ["source"] = data.Source,
                ["num_texts"] = data.CalibrationTexts.Count,
                ["num_eval_texts"] = data.EvaluationTexts.Count,
                ["num_sequences"] = sources.CalibrationSequences,
                ["num_tokens"] = sources.CalibrationInputTokens,
                ["num_target_tokens"] = sources.CalibrationTokens,
                ["sha256"] = ExperimentManifest.Sha256Hex(data.CalibrationTexts),
                ["eval_sha256"] = ExperimentManifest.Sha256Hex(data.EvaluationTexts),
            },
            Seeds = r.Seeds,
            Gpu = model.Backend.DeviceDescription,
            Timings = timer.Phases,
            Results = resultsJson,
        }.Write(outDir);
    }

    private static JsonObject WithScored(JsonObject model, int scored)
    {
        model["num_scored_tensors"] = scored;
        return model;
    }
}
