namespace Cwa.Core.Models;

public enum ParameterRole
{
    Embedding, InputNorm, QProj, KProj, VProj, QBias, KBias, VBias, OProj,
    PostAttentionNorm, GateProj, UpProj, DownProj, FinalNorm, LmHead,
}

/// <summary>
/// One parameter tensor of the model, named as in Hugging Face checkpoints.
/// Linear weights are [out, in] (row = output feature, col = input feature), as in torch.nn.Linear.
/// </summary>
public sealed record ParameterSpec(string Name, int[] Shape, ParameterRole Role, int Block, string Component)
{
    public long NumElements => Shape.Aggregate(1L, (a, d) => a * d);
    public bool Is2D => Shape.Length == 2;
    public int Rows => Shape[0];
    public int Cols => Shape.Length == 2 ? Shape[1] : 1;

    /// <summary>Coarse group used in top_weights.csv: embedding, attention, mlp, norm, lm_head.</summary>
    public string LayerGroup => Role switch
    {
        ParameterRole.Embedding => "embedding",
        ParameterRole.LmHead => "lm_head",
        ParameterRole.InputNorm or ParameterRole.PostAttentionNorm or ParameterRole.FinalNorm => "norm",
        ParameterRole.GateProj or ParameterRole.UpProj or ParameterRole.DownProj => "mlp",
        _ => "attention",
    };
}
