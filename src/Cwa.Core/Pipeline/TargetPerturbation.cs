using System.Text.Json.Nodes;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Perturbation;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;

namespace Cwa.Core.Pipeline;

/// <summary>
/// One measured set of a `cwa perturb` run: a single target (--each: its tensor, index and value before and after)
/// or all targets jointly; held-out metrics and their change, and the random_k control when asked for.
/// </summary>
public sealed record TargetEntry(string Target, string? Label, string? Source, string? Tensor, long? Row, long? Col, float? Weight, float? PerturbedWeight,
    string Method, long WeightsTouched, double Nll, double Perplexity, double Accuracy, double DeltaNll, double DeltaPerplexity, double DeltaAccuracy,
    ControlSummary? RandomK)
{
    public string? Note => double.IsFinite(Perplexity) ? null : Divergence.Explain(Nll);
}

public sealed record TargetPerturbationReport(string TargetsFile, bool Each, string Kind, double Scale, bool Absolute, double Probability, int? Bit,
    QuantGrid? Quantization, string HeldDtype, int Seed, EvalMetrics Baseline, IReadOnlyList<TargetEntry> Entries);

/// <summary>
/// `cwa perturb`: perturbs a given list of weights (a run's top_weights.csv, or published critical weights) jointly
/// or one at a time and measures held-out NLL, perplexity and accuracy against the unperturbed model. Writes
/// perturbation_results.json, config.json and the manifest into a run directory published as a whole.
/// </summary>
public static class TargetPerturbation
{
    public const string ResultsFile = "perturbation_results.json";

    public static TargetPerturbationReport Run(PerturbRequest r, IProgressSink progress, IDeviceBackendFactory? gpu = null)
    {
        var start = DateTimeOffset.UtcNow;
        var timer = new PhaseTimer();
        // Options and the targets file are checked before anything is loaded or the out dir is touched.
        (r.Settings with { Bit = null }).Validate();
        if (r.ControlSeeds < 0) throw new InputException($"--control-seeds must be 0 or more (got {r.ControlSeeds})");
        var targets = WeightTargets.Read(r.Targets);
        var onDevice = LoadedModel.ResolveDevice(r.Device, gpu, progress);
        using var runDir = RunDirectory.Open(r.OutDir, r.Model);
        string outDir = runDir.Staging;

        LoadedModel model;
        IReadOnlyList<ResolvedTarget> resolved;
        IReadOnlyList<Batch> batches;
        var dataRequest = new AnalyzeRequest { EvalFile = r.DataFile, TextField = r.TextField, MaxLength = r.MaxLength, BatchSize = r.BatchSize };
        CalibrationData data;
        PerturbationSettings settings;
        using (timer.Phase("load"))
        {
            var source = ModelSource.Open(r.Model, r.Dtype);
            try
            {
                resolved = WeightTargets.Resolve(targets, source.Specs);
                settings = r.Settings with { HeldType = source.HeldType, Seed = (ulong)r.Seed };
                settings.Validate();
                data = CalibrationData.Load(dataRequest);
                batches = data.EvaluationBatches(source.Tokenizer, dataRequest);
            }
            catch
            {
                source.Dispose();
                throw;
            }
            model = LoadedModel.Load(source, onDevice, new EngineOptions(r.Threads), progress,
                new Workload(batches.Max(b => b.BatchSize), batches.Max(b => b.SeqLen), Gradients: false, Tokens: batches.Sum(b => b.Lengths.Sum())),
                new MemoryPolicy(r.Streaming, r.MemoryBudget, outDir));
        }
        using (model)
        {
            TargetPerturbationReport report;
            using (timer.Phase("perturbation"))
                report = Measure(model, batches, resolved, settings, r, progress);
            JsonOutput.Write(Path.Combine(outDir, ResultsFile), report);
            var config = Config(r, model);
            JsonOutput.Write(Path.Combine(outDir, "config.json"), config);
            WriteManifest(outDir, r, start, timer, model, data, report, config);
            runDir.Publish();
            return report;
        }
    }

    private static TargetPerturbationReport Measure(LoadedModel model, IReadOnlyList<Batch> batches, IReadOnlyList<ResolvedTarget> targets,
        PerturbationSettings settings, PerturbRequest r, IProgressSink progress)
    {
        var backend = model.Backend;
        int sets = r.Each ? targets.Count : 1;
        using var phase = progress.Start("perturbation", (1 + sets * (1 + r.ControlSeeds)) * batches.Count);
        var meter = new PerturbationMeter(backend, batches, settings, phase);
        var baseline = meter.Baseline;
        string method = PerturbationKinds.Name(settings.Kind);

        // The random draws depend only on how many weights each tensor of the set has, so targets of one tensor
        // (--each) share one control instead of measuring the same random sets again.
        var controls = new Dictionary<string, ControlSummary>();
        ControlSummary? Control(IReadOnlyList<TensorSelection> set)
        {
            if (r.ControlSeeds == 0) return null;
            string key = string.Join(";", set.Select(t => $"{t.TensorIndex}:{t.FlatIndices.Length}"));
            if (!controls.TryGetValue(key, out var summary))
                controls[key] = summary = ControlSummary.Of("random_k", Enumerable.Range(0, r.ControlSeeds)
                    .Select(d => meter.Measure("random_k", r.Seed + 1000 + d, RandomKSelector.Matching(backend.Specs, set, r.Seed + 1000 + d))).ToList());
            else
                phase.Advance(r.ControlSeeds * batches.Count);
            return summary;
        }

        TargetEntry Entry(string name, ResolvedTarget? single, IReadOnlyList<TensorSelection> set)
        {
            float? Value()
            {
                if (single == null) return null;
                var v = new float[1];
                backend.ReadWeightsAt(single.TensorIndex, [single.FlatIndex], v);
                return v[0];
            }
            float? before = Value(), after = null;
            var run = meter.Measure(name, r.Seed, set, _ => after = Value());
            return new TargetEntry(name, single?.Label, single?.Source, single?.Tensor, single?.Row, single?.Col, before, after, method, run.WeightsTouched,
                run.Nll, run.Perplexity, run.Accuracy, run.DeltaNll, run.DeltaPerplexity, run.Accuracy - baseline.Accuracy, Control(set));
        }

        var entries = r.Each
            ? targets.Select(t => Entry(t.Name, t, WeightTargets.Joint([t]))).ToList()
            : [Entry($"all {targets.Count} targets", null, WeightTargets.Joint(targets))];
        int? bit = settings.Kind == PerturbationKind.BitFlip ? settings.Bit ?? HeldValueBits.DefaultBit(settings.HeldType) : null;
        return new TargetPerturbationReport(Path.GetFullPath(r.Targets), r.Each, method, settings.Scale, settings.Absolute, settings.Probability, bit,
            settings.Kind == PerturbationKind.Quantize ? new QuantGrid(settings.QuantBits, settings.QuantGroup) : null, model.HeldType.ToString(), r.Seed, baseline, entries);
    }

    private static JsonObject Config(PerturbRequest r, LoadedModel model) => new()
    {
        ["command"] = "perturb",
        ["model"] = model.DisplayName,
        ["targets"] = Path.GetFullPath(r.Targets),
        ["each"] = r.Each,
        ["perturb"] = PerturbationKinds.Name(r.Settings.Kind),
        ["perturb_scale"] = r.Settings.Scale,
        ["absolute_noise"] = r.Settings.Absolute,
        ["perturb_prob"] = r.Settings.Probability,
        ["bit"] = r.Settings.Bit,
        ["quant_bits"] = r.Settings.QuantBits,
        ["quant_group"] = r.Settings.QuantGroup,
        ["seed"] = r.Seed,
        ["control_seeds"] = r.ControlSeeds,
        ["data_file"] = r.DataFile,
        ["text_field"] = r.TextField,
        ["max_length"] = r.MaxLength,
        ["batch_size"] = r.BatchSize,
        ["device"] = model.Backend.Name,
        ["dtype"] = model.HeldType.ToString().ToLowerInvariant(),
        ["streaming"] = r.Streaming,
        ["out_dir"] = r.OutDir,
    };

    private static void WriteManifest(string outDir, PerturbRequest r, DateTimeOffset start, PhaseTimer timer, LoadedModel model, CalibrationData data,
        TargetPerturbationReport report, JsonObject config)
    {
        var results = new JsonObject
        {
            ["baseline_perplexity"] = JsonOutput.Number(report.Baseline.Perplexity),
            ["baseline_nll"] = JsonOutput.Number(report.Baseline.Nll),
            ["num_targets"] = report.Entries.Count,
        };
        var notes = new JsonArray();
        if (r.Each)
        {
            var worst = report.Entries.Where(e => double.IsFinite(e.DeltaPerplexity)).MaxBy(e => e.DeltaPerplexity);
            if (worst != null)
            {
                results["max_delta_ppl"] = worst.DeltaPerplexity;
                results["max_delta_ppl_target"] = worst.Target;
            }
        }
        else
        {
            var e = report.Entries[0];
            results["delta_ppl_targets"] = JsonOutput.Number(e.DeltaPerplexity);
            if (e.RandomK is { } rk) results["delta_ppl_random_k_mean"] = JsonOutput.Number(rk.MeanDeltaPerplexity);
            results["num_weights_perturbed"] = e.WeightsTouched;
        }
        foreach (var e in report.Entries.Where(e => e.Note != null)) notes.Add($"{e.Target}: {e.Note}");
        if (notes.Count > 0) results["notes"] = notes;
        new ExperimentManifest
        {
            ExperimentName = r.ExperimentName ?? $"perturb_{report.Kind}{(r.Each ? "_each" : "")}",
            Start = start,
            Config = config,
            Model = model.ManifestEntry(),
            Data = new JsonObject
            {
                ["source"] = r.DataFile != null ? Path.GetFullPath(r.DataFile) : BuiltInCorpus.SourceName + " (held-out)",
                ["num_eval_texts"] = data.EvaluationTexts.Count,
                ["num_target_tokens"] = report.Baseline.Tokens,
                ["eval_sha256"] = ExperimentManifest.Sha256Hex(data.EvaluationTexts),
            },
            Seeds = [r.Seed],
            Gpu = model.Backend.DeviceDescription,
            Timings = timer.Phases,
            Results = results,
        }.Write(outDir);
    }
}
