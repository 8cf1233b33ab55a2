using Cwa.Core.Engine;
using Cwa.Core.Models;

namespace Cwa.Core.Sensitivity;

/// <summary>
/// Observes the forward pass and keeps, per linear layer and input channel, the sum of squares and the maximum
/// |x| over real (non-padding) tokens — Wanda's ||X_j|| and act_outlier's max|X_j| — plus, for every
/// mlp.down_proj, where its largest input and output activations occurred (super-weight detection).
/// </summary>
public sealed class ActivationStats : IActivationObserver<float>
{
    private readonly Dictionary<string, (double[] SumSq, float[] MaxAbs)> _inputs = new();
    private readonly Dictionary<int, DownProjPeak> _down = new();

    public void OnLinearInput(ParameterSpec spec, ReadOnlySpan<float> x, int tokens, int features, ReadOnlySpan<bool> tokenIsReal)
    {
        if (!_inputs.TryGetValue(spec.Name, out var acc))
            _inputs[spec.Name] = acc = (new double[features], new float[features]);
        var peak = spec.Role == ParameterRole.DownProj ? Peak(spec.Block) : null;
        for (int t = 0; t < tokens; t++)
        {
            if (!tokenIsReal[t]) continue;
            var row = x.Slice(t * features, features);
            for (int j = 0; j < features; j++)
            {
                float v = row[j], a = Math.Abs(v);
                acc.SumSq[j] += (double)v * v;
                if (a > acc.MaxAbs[j]) acc.MaxAbs[j] = a;
                if (peak != null && a > peak.MaxAbsInput) { peak.MaxAbsInput = a; peak.InputChannel = j; }
            }
        }
    }

    public void OnLinearOutput(ParameterSpec spec, ReadOnlySpan<float> y, int tokens, int features, ReadOnlySpan<bool> tokenIsReal)
    {
        if (spec.Role != ParameterRole.DownProj) return;
        var peak = Peak(spec.Block);
        for (int t = 0; t < tokens; t++)
        {
            if (!tokenIsReal[t]) continue;
            var row = y.Slice(t * features, features);
            for (int j = 0; j < features; j++)
            {
                float a = Math.Abs(row[j]);
                if (a > peak.MaxAbsOutput) { peak.MaxAbsOutput = a; peak.OutputChannel = j; }
            }
        }
    }

    private DownProjPeak Peak(int layer) => _down.TryGetValue(layer, out var p) ? p : _down[layer] = new DownProjPeak { Layer = layer };

    public float[]? InputNorms(string tensorName) =>
        _inputs.TryGetValue(tensorName, out var a) ? a.SumSq.Select(s => (float)Math.Sqrt(s)).ToArray() : null;

    public float[]? InputMaxAbs(string tensorName) => _inputs.TryGetValue(tensorName, out var a) ? a.MaxAbs : null;

    public IReadOnlyList<DownProjPeak> DownProjPeaks => _down.Values.OrderBy(p => p.Layer).ToList();

    /// <summary>The raw sums of one linear layer's input (null when it was not observed): what a shard file keeps.</summary>
    internal (double[] SumSq, float[] MaxAbs)? Raw(string tensorName) => _inputs.TryGetValue(tensorName, out var a) ? a : null;

    /// <summary>
    /// Adds statistics observed elsewhere (another shard's tokens): sums of squares add, maxima take the larger. Merged
    /// in shard order, a tie keeps the earlier shard's channel, as the first occurrence wins within one pass.
    /// </summary>
    internal void Merge(string tensorName, ReadOnlySpan<double> sumSq, ReadOnlySpan<float> maxAbs)
    {
        if (!_inputs.TryGetValue(tensorName, out var acc))
            _inputs[tensorName] = acc = (new double[sumSq.Length], new float[maxAbs.Length]);
        for (int j = 0; j < sumSq.Length; j++)
        {
            acc.SumSq[j] += sumSq[j];
            if (maxAbs[j] > acc.MaxAbs[j]) acc.MaxAbs[j] = maxAbs[j];
        }
    }

    internal void Merge(DownProjPeak other)
    {
        var peak = Peak(other.Layer);
        if (other.MaxAbsInput > peak.MaxAbsInput) (peak.MaxAbsInput, peak.InputChannel) = (other.MaxAbsInput, other.InputChannel);
        if (other.MaxAbsOutput > peak.MaxAbsOutput) (peak.MaxAbsOutput, peak.OutputChannel) = (other.MaxAbsOutput, other.OutputChannel);
    }
}

/// <summary>Largest |input| and |output| of one layer's mlp.down_proj over the calibration tokens.</summary>
public sealed class DownProjPeak
{
    public int Layer { get; init; }
    public float MaxAbsInput { get; set; }
    public int InputChannel { get; set; } = -1;
    public float MaxAbsOutput { get; set; }
    public int OutputChannel { get; set; } = -1;
}
