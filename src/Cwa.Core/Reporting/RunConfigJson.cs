using System.Text.Json.Nodes;
using Cwa.Core.Pipeline;

namespace Cwa.Core.Reporting;

/// <summary>config.json: every parameter of the run under the Python project's snake_case keys (topk, not top_k).</summary>
public static class RunConfigJson
{
    public static JsonObject Build(AnalyzeRequest r, string resolvedModel, string resolvedDevice, string resolvedDtype)
    {
        static JsonArray Arr<T>(IEnumerable<T> xs) => new(xs.Select(x => JsonValue.Create(x) as JsonNode).ToArray());
        return new JsonObject
        {
            ["model"] = resolvedModel,
            ["device"] = resolvedDevice,
            ["dtype"] = resolvedDtype,
            ["metric"] = r.Metric,
            ["topk"] = r.TopK,
            ["mode"] = r.Mode,
            ["perturb"] = r.Perturb,
            ["perturb_scale"] = r.PerturbScale,
            ["perturb_absolute"] = r.PerturbAbsolute,
            ["perturb_prob"] = r.PerturbProb,
            ["bit"] = r.Bit,
            ["controls"] = Arr(r.Controls),
            ["control_seeds"] = r.ControlSeeds,
            ["k_sweep"] = Arr(r.KSweep),
            ["seeds"] = Arr(r.Seeds),
            ["stability_check"] = r.StabilityCheck,
            ["data_file"] = r.DataFile,
            ["text_field"] = r.TextField,
            ["eval_file"] = r.EvalFile,
            ["max_samples"] = r.MaxSamples,
            ["max_length"] = r.MaxLength,
            ["batch_size"] = r.BatchSize,
            ["out_dir"] = r.OutDir,
            ["save_plots"] = r.SavePlots,
            ["grad_reduction"] = r.GradReduction,
            ["include_1d"] = r.Include1D,
            ["hutchinson_probes"] = r.HutchinsonProbes,
            ["obd_curvature"] = r.ObdCurvature,
            ["threads"] = r.Threads,
            ["recompute"] = r.Recompute,
            ["streaming"] = r.Streaming,
            ["memory_budget"] = r.MemoryBudget,
            ["dump_scores"] = r.DumpScores,
            ["dump_scores_parquet"] = r.ScoresParquet is { } pq ? new JsonObject { ["top"] = pq.Top, ["tensors"] = new JsonArray(pq.Tensors.Select(t => (JsonNode)t).ToArray()) } : null,
            ["save_tokens"] = r.SaveTokens,
            ["known_weights"] = r.KnownWeights,
            ["ablate_each"] = r.AblateEach,
            ["eval_batch_size"] = r.EvalBatchSize,
            ["tasks"] = r.Tasks,
            ["experiment_name"] = r.ExperimentName,
            ["requested_model"] = r.Model,
            ["requested_device"] = r.Device,
        };
    }
}
