using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Tokenization;

namespace Cwa.Tests.Pipeline;

/// <summary>
/// A CPU backend whose ForwardBackward passes through a hook (call index, loss) -> loss, so tests can simulate
/// overflow (return NaN) or a killed process (throw) at a chosen batch.
/// </summary>
internal sealed class FaultInjectingBackend(IBackend inner, Func<int, double, double> onForwardBackward) : IBackend
{
    private int _calls;
    public string Name => inner.Name;
    public ModelConfig Config => inner.Config;
    public IReadOnlyList<ParameterSpec> Specs => inner.Specs;
    public IActivationObserver<float>? Observer { get => inner.Observer; set => inner.Observer = value; }
    public double ForwardLoss(Batch batch) => inner.ForwardLoss(batch);
    public double ForwardBackward(Batch batch, double scale) => onForwardBackward(_calls++, inner.ForwardBackward(batch, scale));
    public EvalResult Evaluate(Batch batch) => inner.Evaluate(batch);
    public void ClearGradients() => inner.ClearGradients();
    public void ReadGradient(int t, Span<float> d) => inner.ReadGradient(t, d);
    public void WriteGradient(int t, ReadOnlySpan<float> s) => inner.WriteGradient(t, s);
    public void ReadWeight(int t, Span<float> d) => inner.ReadWeight(t, d);
    public void WriteWeights(int t, ReadOnlySpan<long> i, ReadOnlySpan<float> v) => inner.WriteWeights(t, i, v);
    public void Dispose() => inner.Dispose();

    /// <summary>A LoadedModel over a model folder whose CPU backend goes through the hook (identity when null).</summary>
    public static LoadedModel Open(string modelDir, Func<int, double, double>? hook = null)
    {
        var ckpt = CheckpointFolder.Open(modelDir);
        var weights = ModelWeights<float>.Load(ckpt.Config, ckpt);
        return new LoadedModel
        {
            Path = modelDir, DisplayName = Path.GetFileName(modelDir), Checkpoint = ckpt, Tokenizer = TokenizerLoader.Load(modelDir, ckpt.Config),
            Weights = weights, HeldType = DType.F32, Backend = new FaultInjectingBackend(new CpuBackend(weights), hook ?? ((_, loss) => loss)),
        };
    }
}
