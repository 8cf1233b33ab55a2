using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Models;

namespace Cwa.Core.Checkpoints;

/// <summary>Writes a ModelConfig as a Hugging Face config.json that transformers and HfConfigReader both accept.</summary>
public static class HfConfigWriter
{
    public static string ToJson(ModelConfig c)
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Architecture),
            ["model_type"] = c.ModelType,
            ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumLayers,
            ["num_attention_heads"] = c.NumHeads,
            ["num_key_value_heads"] = c.NumKvHeads,
            ["head_dim"] = c.HeadDim,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["attention_bias"] = c.AttentionBias,
            ["mlp_bias"] = false,
            ["torch_dtype"] = c.TorchDtype ?? "float32",
        };
        if (c.BosTokenId is int bos) o["bos_token_id"] = bos;
        if (c.EosTokenIds.Count == 1) o["eos_token_id"] = c.EosTokenIds[0];
        else if (c.EosTokenIds.Count > 1) o["eos_token_id"] = new JsonArray(c.EosTokenIds.Select(e => (JsonNode)e).ToArray());
        if (c.RopeScaling is { } rs)
            o["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = rs.Type,
                ["factor"] = rs.Factor,
                ["low_freq_factor"] = rs.LowFreqFactor,
                ["high_freq_factor"] = rs.HighFreqFactor,
                ["original_max_position_embeddings"] = rs.OriginalMaxPositionEmbeddings,
            };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
