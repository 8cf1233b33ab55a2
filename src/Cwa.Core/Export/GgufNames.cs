using System.Text.RegularExpressions;

namespace Cwa.Core.Export;

/// <summary>Hugging Face Llama tensor names as llama.cpp's converter names them in a GGUF file (blk.N.ffn_down.weight ...).</summary>
public static partial class GgufNames
{
    public static string? Of(string hfName)
    {
        if (hfName == "model.embed_tokens.weight") return "token_embd.weight";
        if (hfName == "lm_head.weight") return "output.weight";
        if (hfName == "model.norm.weight") return "output_norm.weight";
        var m = LayerName().Match(hfName);
        if (!m.Success) return null;
        string? part = m.Groups[2].Value switch
        {
            "self_attn.q_proj" => "attn_q", "self_attn.k_proj" => "attn_k", "self_attn.v_proj" => "attn_v", "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate", "mlp.up_proj" => "ffn_up", "mlp.down_proj" => "ffn_down",
            "input_layernorm" => "attn_norm", "post_attention_layernorm" => "ffn_norm",
            _ => null,
        };
        return part == null ? null : $"blk.{m.Groups[1].Value}.{part}.{m.Groups[3].Value}";
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")]
    private static partial Regex LayerName();
}
