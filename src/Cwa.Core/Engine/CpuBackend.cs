using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>The reference backend: managed fp32 engine on the CPU.</summary>
public sealed class CpuBackend : IBackend
{
    private readonly LlamaModel<float> _model;
    private ModelWeights<float>? _grads;

    public CpuBackend(ModelWeights<float> weights, EngineOptions? options = null)
    {
        Weights = weights;
        var o = options ?? new EngineOptions();
        Gemm.MaxThreads = o.EffectiveThreads;
        _model = new LlamaModel<float>(weights, o);
    }

    public string Name => "cpu";
    public ModelConfig Config => Weights.Config;
    public IReadOnlyList<ParameterSpec> Specs => Weights.Specs;
    public ModelWeights<float> Weights { get; }
    /// <summary>Gradient buffers, allocated on first backward pass (forward-only metrics never pay for them).</summary>
    public ModelWeights<float> Gradients => _grads ??= Weights.ZerosLike();

    public IActivationObserver<float>? Observer
    {
        get => _model.Observer;
        set => _model.Observer = value;
    }

    public void Reserve(Pipeline.Workload workload) => _model.Reserve(workload.Batch, workload.SeqLen, workload.Gradients);
    public void ReleaseWorkspace() => _model.ReleaseWorkspace();

    public double ForwardLoss(Batch batch) => _model.ForwardLoss(batch);
    public double ForwardBackward(Batch batch, double scale) => _model.ForwardBackward(batch, Gradients, scale);
    public EvalResult Evaluate(Batch batch) => _model.Evaluate(batch);
    public void ClearGradients() => _grads?.Clear();

    public void ReadGradient(int tensorIndex, Span<float> destination) => Gradients[tensorIndex].AsSpan().CopyTo(destination);
    public void WriteGradient(int tensorIndex, ReadOnlySpan<float> source) => source.CopyTo(Gradients[tensorIndex]);
    public void ReadWeight(int tensorIndex, Span<float> destination) => Weights[tensorIndex].AsSpan().CopyTo(destination);

    public void ReadWeightsAt(int tensorIndex, ReadOnlySpan<long> flatIndices, Span<float> values)
    {
        var w = Weights[tensorIndex];
        for (int i = 0; i < flatIndices.Length; i++) values[i] = w[flatIndices[i]];
    }

    public void WriteWeights(int tensorIndex, ReadOnlySpan<long> flatIndices, ReadOnlySpan<float> values)
    {
        var w = Weights[tensorIndex];
        for (int i = 0; i < flatIndices.Length; i++) w[flatIndices[i]] = values[i];
    }

    public void Dispose() { }
}
