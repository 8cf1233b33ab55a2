using Cwa.Core.Models;
using Cwa.Core.Perturbation;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Checks of an analyze request that need no weights: the options on their own, then against the model's headers.
/// A run that would fail on an option must fail here, in milliseconds and before anything is written, not after
/// the gradient pass.
/// </summary>
internal static class AnalyzeValidation
{
    /// <summary>Per quantised weight, counted from the buffers the code allocates: index, original and new value, group bookkeeping, snapshot.</summary>
    private const long QuantizeAllBytesPerWeight = 48;
    /// <summary>Per dumped weight, counted from the code: heap entry, kept candidate, gradient capture and the written row.</summary>
    private const long DumpBytesPerRow = 120;

    /// <summary>Checks the options that need no model; returns the --tasks sets, read here once for the whole run (null without).</summary>
    public static IReadOnlyList<Evaluation.TaskSet>? CheckOptions(AnalyzeRequest r, PerturbationKind? kind)
    {
        if (!double.IsFinite(r.PerturbScale)) throw new InputException($"--perturb-scale must be a finite number (got {r.PerturbScale})");
        if (!(r.PerturbProb is >= 0 and <= 1)) throw new InputException($"--perturb-prob must be between 0 and 1 (got {r.PerturbProb})");
        bool perturbs = kind != null || r.Controls.Count > 0 || r.KSweep.Count > 0;
        if (r.Bit != null && (!perturbs || kind != PerturbationKind.BitFlip))
            throw new InputException("--bit only applies to --perturb bit_flip");
        if (r.QuantizeAllButTop && kind != PerturbationKind.Quantize)
            throw new InputException("--quantize-all-but-top only applies to --perturb quantize");
        if (r.Tasks != null && !perturbs)
            throw new InputException("--tasks scores the baseline against the perturbed sets: add --perturb (or score a model alone with cwa eval --tasks)");
        var tasks = r.Tasks != null ? Evaluation.TaskItems.Load(r.Tasks) : null; // checked before anything heavy is loaded
        if (r.QuantizeAllButTop && r.PerturbProb < 1)
            throw new InputException("--quantize-all-but-top compares quantising everything with everything but the top-k; --perturb-prob below 1 would quantise different subsets in each");
        if (r.ScoresParquet is { Top: <= 0, Tensors.Count: 0 })
            throw new InputException("--dump-top 0 (every weight) needs --dump-tensors naming the tensors to dump; every weight of the model is what --dump-scores safetensors writes");
        return tasks;
    }

    /// <summary>k against the tensors this metric scores, --bit against the held dtype.</summary>
    public static void CheckAgainstModel(AnalyzeRequest r, SensitivityMetric metric, PerturbationKind? kind, ModelSource model)
    {
        var scored = model.Specs.Where(s => ScoringPass.IsScored(s, metric, r.Include1D)).ToList();
        if (scored.Count == 0) throw new InputException($"--metric {metric.Name()} has no tensor to score in this model");
        long largest = scored.Max(s => s.NumElements);
        if (r.TopK > largest)
            throw new InputException($"--topk {r.TopK} is larger than the largest scored tensor ({largest} weights)");
        if (r.KSweep.Count > 0 && r.KSweep.Max() > largest)
            throw new InputException($"--k-sweep {r.KSweep.Max()} is larger than the largest scored tensor ({largest} weights)");
        if (r.AblateEach > largest)
            throw new InputException($"--ablate-each {r.AblateEach} is larger than the largest scored tensor ({largest} weights)");
        r.ScoresParquet?.Check(scored);
        // Both keep per-weight bookkeeping in managed memory (indices, old and new values; heap entries and rows):
        // refuse up front rather than die half way through an 8B run.
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (r.QuantizeAllButTop && scored.Where(s => s.Is2D).Sum(s => s.NumElements) * QuantizeAllBytesPerWeight is var need && need > available)
            throw new InputException($"--quantize-all-but-top needs about {MemoryEstimate.Format(need)} of host memory for this model ({QuantizeAllBytesPerWeight} bytes per scored weight), more than the {MemoryEstimate.Format(available)} available; use it on smaller models");
        if (r.ScoresParquet is { } pq && scored.Where(pq.Wants).Sum(s => (long)pq.Count(s)) * DumpBytesPerRow is var dump && dump > available)
            throw new InputException($"--dump-scores parquet would hold about {MemoryEstimate.Format(dump)} of rows ({DumpBytesPerRow} bytes each), more than the {MemoryEstimate.Format(available)} available; lower --dump-top or name fewer --dump-tensors");
        if (kind != null || r.Controls.Count > 0 || r.KSweep.Count > 0)
            r.PerturbationSettingsFor(kind ?? PerturbationKind.Zero, model.HeldType).Validate();
    }
}
