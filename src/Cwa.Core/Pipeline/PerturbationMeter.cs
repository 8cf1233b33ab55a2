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

    private readonly TaskSuite? _tasks;

    public EvalMetrics Baseline { get; }
    /// <summary>Downstream task scores of the unperturbed model (empty without tasks).</summary>
    public IReadOnlyList<TaskResult> BaselineTasks { get; } = [];

    /// <summary>Measures the baseline at once (one evaluation of the phase's steps); with tasks, scores them on every set too.</summary>
    public PerturbationMeter(IBackend backend, IReadOnlyList<Batch> evalBatches, PerturbationSettings settings, IPhaseProgress phase, TaskSuite? tasks = null)
    {
        (_backend, _evalBatches, _settings, _phase, _tasks) = (backend, evalBatches, settings, phase, tasks);
        Baseline = Evaluator.Run(backend, evalBatches, phase);
        if (tasks != null) BaselineTasks = tasks.Run(backend);
    }

    /// <param name="whilePerturbed">called with the perturbation applied, before the evaluation (to read the new values)</param>
    public PerturbedRun Measure(string label, int seed, IReadOnlyList<TensorSelection> set, Action<PerturbationSnapshot>? whilePerturbed = null)
    {
        var snapshot = WeightPerturber.Apply(_backend, set, _settings with { Seed = (ulong)seed });
        try
        {
            whilePerturbed?.Invoke(snapshot);
            var m = Evaluator.Run(_backend, _evalBatches, _phase);
            return new PerturbedRun(label, seed, snapshot.Count, m.Nll, m.Perplexity, m.Accuracy, m.Perplexity - Baseline.Perplexity, m.Nll - Baseline.Nll)
            {
                Units = m.Units, Tasks = _tasks?.Run(_backend) ?? [],
            };
        }
        finally
        {
            WeightPerturber.Restore(_backend, snapshot);
        }
    }
}
