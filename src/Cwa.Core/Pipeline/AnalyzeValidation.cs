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
    public static void CheckOptions(AnalyzeRequest r, PerturbationKind? kind)
    {
        if (!double.IsFinite(r.PerturbScale)) throw new InputException($"--perturb-scale must be a finite number (got {r.PerturbScale})");
        if (!(r.PerturbProb is >= 0 and <= 1)) throw new InputException($"--perturb-prob must be between 0 and 1 (got {r.PerturbProb})");
        bool perturbs = kind != null || r.Controls.Count > 0 || r.KSweep.Count > 0;
        if (r.Bit != null && (!perturbs || kind != PerturbationKind.BitFlip))
            throw new InputException("--bit only applies to --perturb bit_flip");
        if (r.QuantizeAllButTop && kind != PerturbationKind.Quantize)
            throw new InputException("--quantize-all-but-top only applies to --perturb quantize");
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
        if (kind != null || r.Controls.Count > 0 || r.KSweep.Count > 0)
            new PerturbationSettings(kind ?? PerturbationKind.Zero, r.PerturbScale, r.PerturbAbsolute, r.PerturbProb, r.Bit, model.HeldType,
                QuantBits: r.QuantBits, QuantGroup: r.QuantGroup).Validate();
    }
}
