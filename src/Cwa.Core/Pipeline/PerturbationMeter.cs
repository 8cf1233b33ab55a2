using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Perturbation;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Held-out metrics of the unperturbed model, and of the model with one set of weights perturbed; every set is
/// restored bit-exactly before the next is measured.
/// </summary>
public sealed class PerturbationMeter
{
    private readonly IBackend _backend;
    private readonly IReadOnlyList<Batch> _evalBatches;
    private readonly PerturbationSettings _settings;
    private readonly IPhaseProgress _phase;

    public EvalMetrics Baseline { get; }

    /// <summary>Measures the baseline at once (one evaluation of the phase's steps).</summary>
    public PerturbationMeter(IBackend backend, IReadOnlyList<Batch> evalBatches, PerturbationSettings settings, IPhaseProgress phase)
    {
        (_backend, _evalBatches, _settings, _phase) = (backend, evalBatches, settings, phase);
        Baseline = Evaluator.Run(backend, evalBatches, phase);
    }

    /// <param name="whilePerturbed">called with the perturbation applied, before the evaluation (to read the new values)</param>
    public PerturbedRun Measure(string label, int seed, IReadOnlyList<TensorSelection> set, Action<PerturbationSnapshot>? whilePerturbed = null)
    {
        var snapshot = WeightPerturber.Apply(_backend, set, _settings with { Seed = (ulong)seed });
        try
        {
            whilePerturbed?.Invoke(snapshot);
            var m = Evaluator.Run(_backend, _evalBatches, _phase);
            return new PerturbedRun(label, seed, snapshot.Count, m.Nll, m.Perplexity, m.Accuracy, m.Perplexity - Baseline.Perplexity, m.Nll - Baseline.Nll) { Units = m.Units };
        }
        finally
        {
            WeightPerturber.Restore(_backend, snapshot);
        }
    }
}
