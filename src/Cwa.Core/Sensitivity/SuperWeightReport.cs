namespace Cwa.Core.Sensitivity;

/// <summary>One layer's row in super_weights.json.</summary>
public sealed record SuperWeightLayer(
    int Layer, string Parameter, double MaxAbsInput, int InputChannel, double MaxAbsOutput, int OutputChannel,
    bool IsSpike, int Row, int Col, double Weight);

/// <summary>
/// Super-weight detection after "The Super Weight in Large Language Models": in a spike layer, the down_proj
/// output channel with the massive activation and the input channel feeding it locate the super weight
/// down_proj[row = output channel, col = input channel]. A layer is a spike when its max |output| exceeds
/// spikeFactor times the median over layers.
/// </summary>
public static class SuperWeightReport
{
    public static IReadOnlyList<SuperWeightLayer> Build(IReadOnlyList<DownProjPeak> peaks, Func<int, int, int, float> weightAt, double spikeFactor = 5)
    {
        if (peaks.Count == 0) return [];
        var sorted = peaks.Select(p => (double)p.MaxAbsOutput).Order().ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
        return peaks.Select(p => new SuperWeightLayer(
            p.Layer, $"model.layers.{p.Layer}.mlp.down_proj.weight", p.MaxAbsInput, p.InputChannel, p.MaxAbsOutput, p.OutputChannel,
            p.MaxAbsOutput > spikeFactor * median, p.OutputChannel, p.InputChannel,
            p.OutputChannel >= 0 && p.InputChannel >= 0 ? weightAt(p.Layer, p.OutputChannel, p.InputChannel) : double.NaN)).ToList();
    }
}
