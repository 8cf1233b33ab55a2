using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>
/// The model-level interface the analysis pipeline drives. A backend owns the weights and fp32 gradient buffers
/// on its device; only per-tensor data crosses it, so scores can be streamed one tensor at a time.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }
    /// <summary>The accelerator the backend runs on (GPU name), or null on the CPU.</summary>
    string? DeviceDescription => null;
    ModelConfig Config { get; }
    IReadOnlyList<ParameterSpec> Specs { get; }
    IActivationObserver<float>? Observer { get; set; }

    /// <summary>Allocates what batches up to this shape need now, once (not batch by batch as shapes grow).</summary>
    void Reserve(Pipeline.Workload workload) { }

    /// <summary>Frees the forward/backward work buffers (after the gradient pass; a later pass allocates what it needs).</summary>
    void ReleaseWorkspace() { }

    double ForwardLoss(Batch batch);
    /// <summary>Adds scale * d(batch mean loss)/dW to the gradient buffers; returns the batch loss.</summary>
    double ForwardBackward(Batch batch, double scale);
    EvalResult Evaluate(Batch batch);

    /// <summary>
    /// Every batch's sums, in order (the units of paired statistics); a streamed backend runs them layer by layer.
    /// Advances progress once per batch.
    /// </summary>
    IReadOnlyList<EvalResult> EvaluateEach(IReadOnlyList<Batch> batches, Pipeline.IPhaseProgress? progress)
    {
        var results = new EvalResult[batches.Count];
        for (int i = 0; i < batches.Count; i++)
        {
            results[i] = Evaluate(batches[i]);
            progress?.Advance();
        }
        return results;
    }
    void ClearGradients();
    void ReadGradient(int tensorIndex, Span<float> destination);
    /// <summary>Sets a gradient buffer (resuming a checkpointed pass continues from the saved running sums).</summary>
    void WriteGradient(int tensorIndex, ReadOnlySpan<float> source);
    void ReadWeight(int tensorIndex, Span<float> destination);

    /// <summary>
    /// Current values of a few weights. Perturbation reads only the weights it touches, so on a GPU an 8B model is
    /// not copied to the host for every perturbed set.
    /// </summary>
    void ReadWeightsAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values)
    {
        var all = new float[Specs[tensorIndex].NumElements];
        ReadWeight(tensorIndex, all);
        for (int i = 0; i < flatIndices.Length; i++) values[i] = all[flatIndices[i]];
    }
    void WriteWeights(int tensorIndex, ReadOnlySpan<long> flatIndices, ReadOnlySpan<float> values);
}
