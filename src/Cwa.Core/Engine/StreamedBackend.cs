using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;

namespace Cwa.Core.Engine;

/// <summary>
/// The backend for a model that is not held whole (layer streaming): weights stay memory-mapped in their stored
/// dtype and whole passes run layer-major (<see cref="LayerMajorPass"/>), one block resident at a time on the CPU or
/// on a device (its <see cref="IBlockEngine"/>). Gradients exist only for the block being processed, so they are
/// never read back per tensor: gradient passes go through <see cref="StreamingAnalysis"/>, which scores each tensor
/// as it completes.
/// </summary>
public sealed class StreamedBackend : IBackend
{
    private readonly IBlockEngine _engine;
    internal StreamedWeights Weights { get; }
    internal LayerMajorPass Pass { get; }
    internal IBlockEngine Engine => _engine;

    /// <param name="memoryBudget">bytes the saved hidden states may use in memory before they spill to a scratch file</param>
    /// <param name="scratchDir">folder for that scratch file (the run's staging folder)</param>
    internal StreamedBackend(StreamedWeights weights, IBlockEngine engine, long memoryBudget, string? scratchDir)
    {
        Weights = weights;
        _engine = engine;
        Pass = new LayerMajorPass(Weights, engine, memoryBudget, scratchDir);
    }

    /// <summary>Layer streaming on the CPU: each block is widened to fp32 on the host and run by the CPU engine.</summary>
    public static StreamedBackend OnCpu(CheckpointFolder checkpoint, DType held, EngineOptions? options, long memoryBudget, string? scratchDir)
    {
        var o = options ?? new EngineOptions();
        Gemm.MaxThreads = o.EffectiveThreads;
        var weights = new StreamedWeights(checkpoint, held);
        return new StreamedBackend(weights, new CpuBlockEngine(weights, o), memoryBudget, scratchDir);
    }

    public string Name => _engine.Name;
    public string? DeviceDescription => _engine.DeviceDescription;
    public ModelConfig Config => Weights.Config;
    public IReadOnlyList<ParameterSpec> Specs => Weights.Specs;
    public IActivationObserver<float>? Observer { get; set; }

    public void Reserve(Workload workload) => Pass.Reserve(workload);

    public double ForwardLoss(Batch batch)
    {
        var r = Pass.ForwardAndLoss([batch], Observer, null, null)[0];
        return r.Targets == 0 ? 0 : r.SumNll / r.Targets;
    }

    public EvalResult Evaluate(Batch batch) => Pass.EvaluateEach([batch], null)[0];

    public IReadOnlyList<EvalResult> EvaluateEach(IReadOnlyList<Batch> batches, IPhaseProgress? progress) =>
        Pass.EvaluateEach(batches, progress == null ? null : new ScaledProgress(progress, batches.Count / (double)Pass.Steps(batches.Count, backward: false)));

    public double ForwardBackward(Batch batch, double scale) => throw NotPerBatch();
    public void ClearGradients() { }
    public void ReadGradient(int tensorIndex, Span<float> destination) => throw NotPerBatch();
    public void WriteGradient(int tensorIndex, ReadOnlySpan<float> source) => throw NotPerBatch();

    public void Dispose()
    {
        _engine.Dispose();
        Weights.Dispose();
    }

    public void ReadWeight(int tensorIndex, Span<float> destination) => Weights.Fill(tensorIndex, 0, destination);
    public void ReadWeightsAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values) => Weights.ReadWeightsAt(tensorIndex, flatIndices, values);
    public void WriteWeights(int tensorIndex, ReadOnlySpan<long> flatIndices, ReadOnlySpan<float> values) => Weights.WriteWeights(tensorIndex, flatIndices, values);


    private static InvalidOperationException NotPerBatch() =>
        new("a streamed model has no whole-model gradient buffers; its gradient passes run layer-major through StreamingAnalysis");

    /// <summary>Reports a pass's fine-grained steps as a fraction of the caller's per-batch steps.</summary>
    private sealed class ScaledProgress(IPhaseProgress inner, double factor) : IPhaseProgress
    {
        public void Advance(double steps = 1) => inner.Advance(steps * factor);
        public void Describe(string text) => inner.Describe(text);
        public void Dispose() { }
    }
}
