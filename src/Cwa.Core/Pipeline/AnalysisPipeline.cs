using System.Text.Json.Nodes;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// An analyze run end to end: load, calibrate, score, rank, write tables and plots, optionally perturb and
/// check stability, then the report and the manifest (last, so it can list and hash every other file).
/// </summary>
public static class AnalysisPipeline
{
    public const string KnownWeightsFile = "known_weights.json";
    public const string AblationFile = "ablation.json";

    /// <param name="gpu">opens the CUDA backend for --device cuda/auto (null: CPU only)</param>
    public static AnalysisSummary Run(AnalyzeRequest r, IProgressSink progress, IDeviceBackendFactory? gpu = null)
    {
        var start = DateTimeOffset.UtcNow;
        var timer = new PhaseTimer();
        using var memory = MemoryMonitor.Start();
        // Every option and everything the model's headers tell is checked before any heavy work, so a bad option
        // fails in milliseconds with exit code 2 and the out dir is never touched.
        var metric = SensitivityMetrics.Parse(r.Metric);
        var curvature = SensitivityMetrics.ParseCurvature(r.ObdCurvature);
        var mode = RankingModes.Parse(r.Mode);
        foreach (var c in r.Controls) RankingModes.ParseControl(c);
        PerturbationKind? kind = r.Perturb != null ? PerturbationKinds.Parse(r.Perturb) : null;
        bool perturb = kind != null || r.Controls.Count > 0 || r.KSweep.Count > 0;
        bool heldOut = perturb || r.AblateEach > 0;
        var tasks = AnalyzeValidation.CheckOptions(r, kind);
        var onDevice = LoadedModel.ResolveDevice(r.Device, gpu, progress);
        // The run writes into a staging folder that replaces the out dir only once complete (and holds its lock).
        using var runDir = RunDirectory.Open(r.OutDir, r.Model);
        string outDir = runDir.Staging;

        LoadedModel model;
        CalibrationData data;
        IReadOnlyList<Data.Batch> batches, evalBatches = [];
        StabilityAnalysis.Plan? stabilityPlan = null;
        Validation.KnownWeightSet? known = null;
        using (timer.Phase("load"))
        {
            data = CalibrationData.Load(r);
            var source = ModelSource.Open(r.Model, r.Dtype);
            try
            {
                AnalyzeValidation.CheckAgainstModel(r, metric, kind, source);
                if (r.KnownWeights != null) known = Validation.KnownWeights.Load(r.KnownWeights, source.Config, source.Specs);
                if (known?.Note is { } note) progress.Info($"--known-weights: {note}");
                batches = data.CalibrationBatches(source.Tokenizer, r, (ulong)r.Seeds[0]);
                if (heldOut) evalBatches = data.EvaluationBatches(source.Tokenizer, r, r.EvalBatchSize);
                if (r.Seeds.Count > 1 || r.StabilityCheck) stabilityPlan = StabilityAnalysis.Prepare(source.Tokenizer, data, r);
            }
            catch
            {
                source.Dispose();
                throw;
            }
            bool gradients = metric != SensitivityMetric.Magnitude && !metric.NeedsActivations();
            // The largest batch shape the run will see (texts shorter than --max-length make smaller batches).
            var shapes = batches.Concat(evalBatches).Concat(stabilityPlan?.Seeds.SelectMany(s => s.Batches) ?? [])
                .Concat(stabilityPlan?.Halves is var (ha, hb) ? ha.Concat(hb) : []).ToList();
            var workload = new Workload(shapes.Max(b => b.BatchSize), shapes.Max(b => b.SeqLen), gradients, metric.NeedsFisher(curvature) || r.SkipNonFinite,
                Math.Max(batches.Sum(b => b.Lengths.Sum()), evalBatches.Sum(b => b.Lengths.Sum())), ScoresInPlace: metric.NeedsFisher(curvature));
            model = LoadedModel.Load(source, onDevice, new EngineOptions(r.Threads, r.Recompute), progress, workload,
                new MemoryPolicy(r.Streaming, r.MemoryBudget, outDir));
            if (model.Backend is StreamedBackend) StreamingAnalysis.CheckSupported(metric, curvature, r, model.Config);
        }
        using (model)
        {
            ShardSet? shards = null;
            if (r.Shard != null || r.MergeShards.Count > 0)
            {
                CheckShardable(r, metric, curvature);
                if (r.Shard is { } shard) return RunShard(r, shard, model, data, batches, metric, curvature, runDir, timer, progress);
                // Every shard is checked (run key, 1..N once each, checksums) before any scoring.
                using (timer.Phase("merge"))
                    shards = ShardSet.Open(r.MergeShards, RunKey(r, model, data, batches, progress), ShardFiles.Layout(model.Backend.Specs, metric, curvature), batches.Count);
            }
            using var openShards = shards;
            if (r.SaveTokens) CalibrationTokensFile.Write(Path.Combine(outDir, CalibrationTokensFile.Name), batches);
            int maxK = Math.Max(Math.Max(r.TopK, r.AblateEach), r.KSweep.Count > 0 ? r.KSweep.Max() : 0);
            var (sources, ranking) = RankingPass.Run(model, batches, metric, curvature, mode, maxK, r,
                r.DumpScores ? Path.Combine(outDir, "scores.safetensors") : null, progress, timer,
                model.Backend is StreamedBackend || shards != null ? null : Checkpoint(r, runDir, model, data, batches, progress),
                new ScoreExtras(r.ScoresParquet, known != null ? Validation.KnownWeights.Probes(known) : null), shards);
            List<RankedWeight> top;
            using (timer.Phase("ranking"))
            {
                top = ToRanked(model, sources, ranking.Select(r.TopK));
                // One tensor's rows at a time: the weights and gradients of the dumped entries are read per tensor.
                if (r.ScoresParquet != null)
                    ScoresParquet.Write(Path.Combine(outDir, ScoresParquet.FileName),
                        ranking.Dumped.GroupBy(s => s.TensorIndex).Select(g => (IReadOnlyList<RankedWeight>)ToRanked(model, sources, g.ToList())));
            }

            var outputs = new RunOutputs(outDir, $"{metric.Name()}_k{r.TopK}");
            string dtypeName = model.HeldType.ToString().ToLowerInvariant();
            var config = RunConfigJson.Build(r, model.DisplayName, model.Backend.Name, dtypeName);
            using (timer.Phase("writing"))
            {
                AtomicFile.WriteAllText(outputs.PathOf("config.json"), config.ToJsonString(JsonOutput.Options));
                outputs.Tables(ranking, top);
            }
            IReadOnlyList<SuperWeightLayer> superWeights = [];
            if (metric == SensitivityMetric.ActOutlier && sources.Activations != null)
            {
                var specs = model.Backend.Specs;
                superWeights = SuperWeightReport.Build(sources.Activations.DownProjPeaks, (layer, row, col) =>
                {
                    int t = LlamaLayout.IndexOf(specs, $"model.layers.{layer}.mlp.down_proj.weight");
                    var value = new float[1];
                    model.Backend.ReadWeightsAt(t, [(long)row * model.Config.IntermediateSize + col], value);
                    return value[0];
                });
                JsonOutput.Write(outputs.PathOf("super_weights.json"), new { Layers = superWeights, SpikeFactor = 5 });
            }
            if (r.SavePlots)
                using (timer.Phase("plots"))
                    outputs.RankingPlots(ranking, metric.Name());

            PerturbationReport? pert = null;
            if (perturb)
                using (timer.Phase("perturbation"))
                {
                    pert = PerturbationExperiment.Run(model, evalBatches, ranking, r, tasks, progress);
                    JsonOutput.Write(outputs.PathOf("perturbation_results.json"), pert);
                    if (pert.Controls.Count > 0)
                        JsonOutput.Write(outputs.PathOf("control_baselines.json"), new { pert.Baseline, pert.Controls, pert.TopKRun, pert.TopOverRandomRatio, pert.TopMinusRandomCi95High });
                    if (r.SavePlots) outputs.PerturbationPlots(pert, metric.Name());
                }
            AblationReport? ablation = null;
            if (r.AblateEach > 0)
                using (timer.Phase("ablation"))
                {
                    ablation = SingleWeightAblation.Run(model, evalBatches, ranking, r, progress);
                    JsonOutput.Write(outputs.PathOf(AblationFile), ablation);
                    if (r.SavePlots) outputs.AblationPlot(ablation, metric.Name());
                }
            StabilityReport? stability = null;
            if (r.Seeds.Count > 1 || r.StabilityCheck)
                using (timer.Phase("stability"))
                {
                    stability = StabilityAnalysis.Run(model, stabilityPlan!, r, metric, curvature, mode, ranking, progress);
                    JsonOutput.Write(outputs.PathOf("stability_summary.json"), new
                    {
                        stability.Runs, stability.Pairs, stability.MeanJaccardAcrossSeeds, stability.DisjointHalves, TopK = r.TopK, Mode = mode.Name(),
                        stability.JaccardAtK, RankCorrelationAtTopK = stability.RankCorrelations,
                        JaccardMatrix = Rows(stability.JaccardMatrix),
                    });
                    if (r.SavePlots) outputs.StabilityPlot(stability);
                }

            var results = new List<ResultValue>();
            if (metric != SensitivityMetric.Magnitude) // |W| reads no data, so it has no calibration loss
            {
                results.Add(new("calibration_loss", "calibration loss (per target token)", sources.CalibrationLoss));
                // The Python original's avg_loss: the mean of the batches' mean losses (batches of unequal size weigh the same).
                results.Add(new("avg_loss", "calibration loss (mean over batches)", sources.MeanBatchLoss));
            }
            results.Add(new("top1_score", "top-1 score", top.Count > 0 ? top.Max(t => t.Score) : double.NaN));
            if (pert != null)
            {
                results.Add(new("baseline_perplexity", "baseline perplexity", pert.Baseline.Perplexity));
                results.Add(new("delta_ppl_top_k", $"Δppl top_k ({pert.Kind})", pert.TopKRun.DeltaPerplexity));
                results.AddRange(pert.Controls.Select(c => new ResultValue($"delta_ppl_{c.Selection}_mean", $"Δppl {c.Selection} (mean)", c.MeanDeltaPerplexity)));
                foreach (var c in pert.Controls.Where(c => c.Paired != null))
                {
                    results.Add(new($"paired_delta_nll_top_minus_{c.Selection}", $"ΔNLL top_k − {c.Selection}, paired over {c.Paired!.Units} texts", c.Paired.MeanNllDifference));
                    results.Add(new($"paired_delta_nll_top_minus_{c.Selection}_ci95_low", "  95% bootstrap interval, low", c.Paired.Ci95Low));
                    results.Add(new($"paired_delta_nll_top_minus_{c.Selection}_ci95_high", "  95% bootstrap interval, high", c.Paired.Ci95High));
                }
                if (pert.Split is { } split)
                {
                    results.Add(new("delta_ppl_quantize_all", "Δppl quantise every scored weight", split.All.DeltaPerplexity));
                    results.Add(new("delta_ppl_quantize_all_but_top", "Δppl quantise all but the top-k", split.AllButTop.DeltaPerplexity));
                    results.Add(new("delta_ppl_quantize_all_but_random_k", "Δppl quantise all but random-k", split.AllButRandom.DeltaPerplexity));
                    if (split.TopShare is double share) results.Add(new("top_k_share_of_quantization_damage", "share of that damage the top-k carry", share));
                    if (split.RandomShare is double rshare) results.Add(new("random_k_share_of_quantization_damage", "share random-k carry", rshare));
                }
            }
            if (pert != null)
                foreach (var t in pert.BaselineTasks)
                {
                    results.Add(new($"task_{t.Task}_acc_baseline", $"{t.Task} acc, baseline", t.Accuracy));
                    if (pert.TopKRun.Tasks.FirstOrDefault(x => x.Task == t.Task) is { } topTask)
                        results.Add(new($"task_{t.Task}_acc_top_k", $"{t.Task} acc, top_k perturbed", topTask.Accuracy));
                    foreach (var c in pert.Controls)
                        if (c.Runs.SelectMany(x => x.Tasks).Where(x => x.Task == t.Task).ToList() is { Count: > 0 } cs)
                            results.Add(new($"task_{t.Task}_acc_{c.Selection}_mean", $"{t.Task} acc, {c.Selection} (mean)", cs.Average(x => x.Accuracy)));
                }
            if (stability != null) results.Add(new("mean_jaccard_across_seeds", "mean Jaccard across seeds", stability.MeanJaccardAcrossSeeds));
            if (ablation is { Weights.Count: > 0 } ab)
            {
                results.Add(new("ablation_top1_delta_ppl", $"Δppl top-1 weight alone ({ab.Kind})", ab.Weights[0].DeltaPerplexityAlone));
                results.Add(new("ablation_joint_delta_ppl", $"Δppl top-{ab.N} jointly", ab.Weights[^1].DeltaPerplexityJoint));
                results.Add(new("ablation_sum_individual_delta_ppl", $"sum of the top-{ab.N} alone", ab.Weights[^1].SumOfIndividual));
            }
            Validation.KnownWeightReport? knownReport = null;
            if (known != null)
            {
                knownReport = Validation.KnownWeightReport.Of(known, ranking, model.Backend.Specs, r.TopK);
                JsonOutput.Write(outputs.PathOf(KnownWeightsFile), knownReport);
                if (knownReport.Weights.Count > 0)
                {
                    results.Add(new("known_weights_recall_per_layer", $"known-weight recall@{r.TopK} per_layer", knownReport.RecallPerLayer!.Value));
                    results.Add(new("known_weights_recall_global", $"known-weight recall@{r.TopK} global", knownReport.RecallGlobal!.Value));
                    results.Add(new("known_weights_recall_per_block", $"known-weight recall@{r.TopK} per_block", knownReport.RecallPerBlock!.Value));
                }
            }

            var facts = new RunFacts(r, start, timer, metric, mode, model, data, sources, ranking, top, superWeights, pert, stability, config, dtypeName, results, memory, knownReport);
            using (timer.Phase("report"))
                RunDocuments.WriteReport(outputs.PathOf("report.html"), facts, outputs.PlotFiles);
            RunDocuments.WriteManifest(outDir, facts);

            var files = Directory.EnumerateFiles(outDir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(outDir, f)).Order().ToList();
            runDir.Publish();
            return new AnalysisSummary(r.OutDir, model.DisplayName, metric.Name(), mode.Name(), r.TopK, sources.CalibrationLoss,
                sources.CalibrationSequences, sources.CalibrationTokens, top.OrderByDescending(t => t.Score).Take(10).ToList(), files, results, timer.Phases);
        }
    }

    /// <summary>
    /// The gradient checkpoint, keyed by everything that changes the sums, when the run asks for one. The key covers
    /// the weights' bytes (a fast hash of the mapped shards), not only their headers, so a checkpoint of another
    /// model with the same shapes is refused.
    /// </summary>
    private static GradientCheckpoint? Checkpoint(AnalyzeRequest r, RunDirectory runDir, LoadedModel model, CalibrationData data,
        IReadOnlyList<Data.Batch> batches, IProgressSink progress)
    {
        if (r.CheckpointEvery <= 0 && !r.Resume) return null;
        return new GradientCheckpoint(runDir.CheckpointPath, RunKey(r, model, data, batches, progress), r.CheckpointEvery > 0 ? r.CheckpointEvery : 25);
    }

    /// <summary>Everything that changes the gradient sums: the weights' bytes, the data and the arguments (shards of one run share it).</summary>
    private static string RunKey(AnalyzeRequest r, LoadedModel model, CalibrationData data, IReadOnlyList<Data.Batch> batches, IProgressSink progress)
    {
        string weights;
        using (var phase = progress.Start("hashing weights", 1))
        {
            weights = model.Checkpoint.ContentHash();
            phase.Advance();
        }
        return ExperimentManifest.Sha256Hex([
            weights, string.Join(",", model.Checkpoint.ShardHeaderSha256.Values), ExperimentManifest.Sha256Hex(data.CalibrationTexts),
            r.Metric, r.ObdCurvature, r.Seeds[0].ToString(), r.MaxSamples.ToString(), r.MaxLength.ToString(), r.BatchSize.ToString(),
            r.GradReduction, r.SkipNonFinite.ToString(), model.HeldType.ToString(), model.Backend.Name, batches.Count.ToString()]);
    }

    /// <summary>What a sharded run can split: sums over batches (gradients, Fisher, activation statistics), on any backend, streamed or not.</summary>
    private static void CheckShardable(AnalyzeRequest r, SensitivityMetric metric, ObdCurvature curvature)
    {
        string what = r.Shard != null ? "--shard" : "cwa merge";
        if (metric == SensitivityMetric.Magnitude)
            throw new InputException($"{what}: --metric magnitude needs no calibration data, so there is nothing to split into shards; run it once");
        if (metric.NeedsHessian(curvature))
            throw new InputException($"{what}: --metric {metric.Name()} is not split into shards (its Hessian pass needs the whole model in fp64); grad_x_weight, grad_squared, fisher, obd with fisher curvature, wanda and act_outlier are");
        if (r.GradReduction != "sum") throw new InputException($"{what} needs --grad-reduction sum (a mean over batches is not a sum of shards)");
        if (r.CheckpointEvery > 0 || r.Resume) throw new InputException($"{what}: --checkpoint-every and --resume do not apply to shards");
    }

    /// <summary>--shard I/N: this shard's partial sums, written instead of the outputs.</summary>
    private static AnalysisSummary RunShard(AnalyzeRequest r, ShardSpec shard, LoadedModel model, CalibrationData data, IReadOnlyList<Data.Batch> batches,
        SensitivityMetric metric, ObdCurvature curvature, RunDirectory runDir, PhaseTimer timer, IProgressSink progress)
    {
        var mine = shard.Batches(batches.Count).Select(b => batches[b]).ToList();
        if (mine.Count == 0)
            throw new InputException($"--shard {shard.Index}/{shard.Count}: there are only {batches.Count} calibration batches, so this shard has none; use fewer shards");
        string key = RunKey(r, model, data, batches, progress);
        string path = Path.Combine(runDir.Staging, shard.FileName);
        ScoreSources sources;
        if (metric.NeedsActivations())
        {
            // Activation statistics are small (one value pair per input channel): computed whole, then written.
            using (timer.Phase("forward"))
                sources = model.Backend is StreamedBackend s ? StreamingAnalysis.Observe(s, mine, progress) : GradientPass.Run(model, mine, metric, curvature, r, progress);
            using (timer.Phase("writing"))
                ShardFiles.WriteActivations(path, key, shard, mine.Count, r, sources, model.Backend.Specs, metric, model.Backend.Name);
        }
        else if (model.Backend is StreamedBackend streamed)
        {
            // Each tensor's partial sums go to the shard file as the layer-major pass completes them.
            using var save = ShardFiles.Begin(path, key, model.Backend.Specs, metric.NeedsFisher(curvature));
            StreamingAnalysis.SweepSums sums;
            using (timer.Phase("gradients"))
            using (var phase = progress.Start("gradients (layer-major)", streamed.Pass.Steps(mine.Count, backward: true)))
                sums = StreamingAnalysis.GradientSweep(streamed, mine, metric, curvature, r, c => save.Write(c.Index, c.Gradient, c.Fisher ?? []), phase);
            sources = new ScoreSources
            {
                CalibrationLoss = sums.LossSum / sums.Tokens, MeanBatchLoss = sums.BatchLossSum / sums.Used, CalibrationTokens = sums.Tokens,
                CalibrationInputTokens = GradientPass.InputTokens(mine), CalibrationSequences = mine.Sum(b => b.BatchSize), SkippedBatches = sums.Skipped,
            };
            using (timer.Phase("writing"))
                ShardFiles.Commit(save, shard, mine.Count, r, sources, model.Backend.Name);
        }
        else
        {
            using (timer.Phase("gradients"))
                sources = GradientPass.Run(model, mine, metric, curvature, r, progress);
            using (timer.Phase("writing"))
                ShardFiles.Write(path, key, shard, mine.Count, r, sources, model.Backend.Specs, model.Backend);
        }
        runDir.Publish();
        progress.Info($"shard {shard.Index} of {shard.Count}: {mine.Count} of {batches.Count} batches; merge all shards with `cwa merge .../{shard.FileName} ... --out-dir DIR`");
        return new AnalysisSummary(r.OutDir, model.DisplayName, metric.Name(), r.Mode, r.TopK, sources.CalibrationLoss, sources.CalibrationSequences,
            sources.CalibrationTokens, [], [shard.FileName], [new("calibration_loss", "calibration loss of this shard (per target token)", sources.CalibrationLoss)], timer.Phases);
    }

    private static List<RankedWeight> ToRanked(LoadedModel model, ScoreSources sources, List<ScoredIndex> selected)
    {
        var specs = model.Backend.Specs;
        // Weights (and device-held gradients) of the selected entries only, read tensor by tensor.
        var weights = new Dictionary<ScoredIndex, float>();
        var gradients = new Dictionary<ScoredIndex, float>();
        foreach (var group in selected.GroupBy(s => s.TensorIndex))
        {
            var items = group.ToArray();
            var at = items.Select(s => s.FlatIndex).ToArray();
            var values = new float[items.Length];
            model.Backend.ReadWeightsAt(group.Key, at, values);
            for (int i = 0; i < items.Length; i++) weights[items[i]] = values[i];
            if (sources.OnDevice is not { } device) continue;
            device.ReadGradientAt(group.Key, at, values);
            for (int i = 0; i < items.Length; i++) gradients[items[i]] = values[i];
        }
        return selected.Select(s =>
        {
            var spec = specs[s.TensorIndex];
            int cols = spec.Cols;
            float g = sources.Gradient?[s.TensorIndex][s.FlatIndex] ?? sources.CapturedGradients?.GetValueOrDefault(s, float.NaN) ?? gradients.GetValueOrDefault(s, float.NaN);
            return new RankedWeight(s.TensorIndex, spec.Name, s.FlatIndex, (int)(s.FlatIndex / cols), (int)(s.FlatIndex % cols), s.Score,
                weights[s], g, spec.Block, spec.Component, spec.LayerGroup);
        }).ToList();
    }

    private static double[][] Rows(double[,] m) =>
        Enumerable.Range(0, m.GetLength(0)).Select(i => Enumerable.Range(0, m.GetLength(1)).Select(j => m[i, j]).ToArray()).ToArray();
}
