namespace Cwa.Core.Models;

/// <summary>
/// Ground truth for tests: one mlp.down_proj weight [Row, Col] of layer Layer that the model cannot live without.
/// Every token's embedding carries an offset of -Magnitude on hidden channel Row, which no attention output and no
/// earlier MLP writes (those o_proj / down_proj rows are zeroed). Layer Layer's MLP channel Col reads only channel Row
/// (gate and up rows set to -1 there), so it fires with about H times a unit input, and the planted down_proj weight
/// writes +Magnitude back on Row: a massive down_proj output, as super weights produce, that cancels the offset.
/// Zeroing that one weight leaves the offset in the residual stream of every token through every later layer.
/// (Only BOS carrying the offset, as in real LLMs, was tried first: the 4-layer demo barely uses BOS after layer 0,
/// and removing the weight then changed held-out perplexity by -2 to -3, not a reliable ground truth.)
/// Applied tensor by tensor while a model is written.
/// </summary>
public sealed record PlantedSuperWeight(int Layer, int Row, int Col, float Magnitude = 1000f)
{
    public static PlantedSuperWeight Parse(string text, ModelConfig config)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !parts.All(p => int.TryParse(p, out _)))
            throw new InputException($"--plant-super-weight expects LAYER,ROW,COL (got '{text}')");
        var (l, r, c) = (int.Parse(parts[0]), int.Parse(parts[1]), int.Parse(parts[2]));
        if (l < 0 || l >= config.NumLayers) throw new InputException($"--plant-super-weight: layer {l} is outside 0..{config.NumLayers - 1}");
        if (r < 0 || r >= config.HiddenSize) throw new InputException($"--plant-super-weight: row {r} is outside the hidden size 0..{config.HiddenSize - 1}");
        if (c < 0 || c >= config.IntermediateSize) throw new InputException($"--plant-super-weight: col {c} is outside the intermediate size 0..{config.IntermediateSize - 1}");
        return new PlantedSuperWeight(l, r, c);
    }

    public string TensorName => $"model.layers.{Layer}.mlp.down_proj.weight";

    /// <summary>Rewrites the tensor's values in place where the plant needs it; other tensors are left alone.</summary>
    public void Apply(ParameterSpec spec, Span<float> v, ModelConfig config)
    {
        int h = config.HiddenSize, f = config.IntermediateSize;
        switch (spec.Role)
        {
            case ParameterRole.Embedding:
                for (int t = 0; t < spec.Rows; t++) v[t * h + Row] = -Magnitude;
                break;
            case ParameterRole.OProj when spec.Block <= Layer:
                v.Slice(Row * spec.Cols, spec.Cols).Clear();
                break;
            case ParameterRole.DownProj when spec.Block < Layer:
                v.Slice(Row * f, f).Clear();
                break;
            case ParameterRole.PostAttentionNorm when spec.Block == Layer:
                v[Row] = 1;
                break;
            case ParameterRole.GateProj or ParameterRole.UpProj when spec.Block == Layer:
                v.Slice(Col * h, h).Clear();
                v[Col * h + Row] = -1;
                break;
            case ParameterRole.DownProj when spec.Block == Layer:
                for (int i = 0; i < h; i++) v[i * f + Col] = 0;
                // The MLP input on Row is about -sqrt(H) (the offset dominates the RMS), so channel Col holds
                // SiLU(sqrt(H)) * sqrt(H) and this weight writes +Magnitude.
                double s = Math.Sqrt(h);
                v[Row * f + Col] = (float)(Magnitude / (s / (1 + Math.Exp(-s)) * s));
                break;
        }
    }
}
