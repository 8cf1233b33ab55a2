namespace Cwa.Core.Models;

/// <summary>The parameter list of a Llama-family model in Hugging Face order and naming.</summary>
public static class LlamaLayout
{
    public static IReadOnlyList<ParameterSpec> Parameters(ModelConfig c)
    {
        var list = new List<ParameterSpec>
        {
            new("model.embed_tokens.weight", [c.VocabSize, c.HiddenSize], ParameterRole.Embedding, -1, "embed_tokens"),
        };
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"model.layers.{i}.";
            list.Add(new(p + "input_layernorm.weight", [c.HiddenSize], ParameterRole.InputNorm, i, "input_layernorm"));
            list.Add(new(p + "self_attn.q_proj.weight", [c.QDim, c.HiddenSize], ParameterRole.QProj, i, "self_attn.q_proj"));
            list.Add(new(p + "self_attn.k_proj.weight", [c.KvDim, c.HiddenSize], ParameterRole.KProj, i, "self_attn.k_proj"));
            list.Add(new(p + "self_attn.v_proj.weight", [c.KvDim, c.HiddenSize], ParameterRole.VProj, i, "self_attn.v_proj"));
            if (c.AttentionBias)
            {
                list.Add(new(p + "self_attn.q_proj.bias", [c.QDim], ParameterRole.QBias, i, "self_attn.q_proj.bias"));
                list.Add(new(p + "self_attn.k_proj.bias", [c.KvDim], ParameterRole.KBias, i, "self_attn.k_proj.bias"));
                list.Add(new(p + "self_attn.v_proj.bias", [c.KvDim], ParameterRole.VBias, i, "self_attn.v_proj.bias"));
            }
            list.Add(new(p + "self_attn.o_proj.weight", [c.HiddenSize, c.QDim], ParameterRole.OProj, i, "self_attn.o_proj"));
            list.Add(new(p + "post_attention_layernorm.weight", [c.HiddenSize], ParameterRole.PostAttentionNorm, i, "post_attention_layernorm"));
            list.Add(new(p + "mlp.gate_proj.weight", [c.IntermediateSize, c.HiddenSize], ParameterRole.GateProj, i, "mlp.gate_proj"));
            list.Add(new(p + "mlp.up_proj.weight", [c.IntermediateSize, c.HiddenSize], ParameterRole.UpProj, i, "mlp.up_proj"));
            list.Add(new(p + "mlp.down_proj.weight", [c.HiddenSize, c.IntermediateSize], ParameterRole.DownProj, i, "mlp.down_proj"));
        }
        list.Add(new("model.norm.weight", [c.HiddenSize], ParameterRole.FinalNorm, -1, "norm"));
        if (!c.TieWordEmbeddings)
            list.Add(new("lm_head.weight", [c.VocabSize, c.HiddenSize], ParameterRole.LmHead, -1, "lm_head"));
        return list;
    }

    public static long ParameterCount(ModelConfig c) => Parameters(c).Sum(p => p.NumElements);

    /// <summary>Position of the named tensor in a layout (for callers that hold specs, not a ModelWeights).</summary>
    public static int IndexOf(IReadOnlyList<ParameterSpec> specs, string name)
    {
        for (int i = 0; i < specs.Count; i++)
            if (specs[i].Name == name) return i;
        throw new CwaException($"model has no parameter named '{name}'");
    }
}
