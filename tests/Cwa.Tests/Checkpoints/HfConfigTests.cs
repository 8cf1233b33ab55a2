using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Tests.Checkpoints;

public class HfConfigTests
{
    private const string Llama31 = """
    {"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128256,"hidden_size":4096,"intermediate_size":14336,
     "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":500000.0,
     "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
     "tie_word_embeddings":false,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],"torch_dtype":"bfloat16","max_position_embeddings":131072}
    """;

    [Fact]
    public void ParsesLlama31WithRopeScaling()
    {
        var c = HfConfigReader.Parse(Llama31, "config.json");
        Assert.Equal(4096, c.HiddenSize);
        Assert.Equal(128, c.HeadDim);
        Assert.Equal(8, c.NumKvHeads);
        Assert.Equal(new RopeScaling("llama3", 8, 1, 4, 8192), c.RopeScaling);
        Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
        Assert.Equal(128000, c.BosTokenId);
        Assert.False(c.AttentionBias);
        // 226 two-dimensional-or-not tensors in HF naming: 1 + 32*9 + 1 + 1 = 291 total, of which 2-D: 1 + 32*7 + 1 = 226.
        Assert.Equal(226, LlamaLayout.Parameters(c).Count(p => p.Is2D));
        Assert.Equal(8_030_261_248L, LlamaLayout.ParameterCount(c));
    }

    [Fact]
    public void ParsesMistralAndQwen2()
    {
        var m = HfConfigReader.Parse("""{"model_type":"mistral","vocab_size":32000,"hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"rope_theta":1000000.0,"eos_token_id":2,"bos_token_id":1}""", "m.json");
        Assert.Equal("mistral", m.ModelType);
        Assert.Equal([2], m.EosTokenIds);
        var q = HfConfigReader.Parse("""{"model_type":"qwen2","vocab_size":151936,"hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"tie_word_embeddings":true}""", "q.json");
        Assert.True(q.AttentionBias);
        Assert.True(q.TieWordEmbeddings);
        Assert.Equal(64, q.HeadDim);
        Assert.Contains(LlamaLayout.Parameters(q), p => p.Name == "model.layers.0.self_attn.k_proj.bias");
        Assert.DoesNotContain(LlamaLayout.Parameters(q), p => p.Name == "lm_head.weight");
    }

    [Fact]
    public void WriterRoundTripsThroughReader()
    {
        var c = HfConfigReader.Parse(Llama31, "config.json");
        var back = HfConfigReader.Parse(HfConfigWriter.ToJson(c), "x.json");
        Assert.Equal(c with { EosTokenIds = [] }, back with { EosTokenIds = [] });
        Assert.Equal(c.EosTokenIds, back.EosTokenIds);
    }

    [Theory]
    [InlineData("""{"model_type":"gpt2","vocab_size":1}""", "model_type 'gpt2' is not supported (supported: llama, mistral, qwen2)")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_attention_heads":2}""", "missing required key 'num_hidden_layers'")]
    [InlineData("""{"model_type":"llama",""", "malformed JSON")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"rope_scaling":{"rope_type":"yarn","factor":4}}""", "rope_scaling type 'yarn' is not supported")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3}""", "inconsistent attention sizes")]
    public void BadConfigsGiveOneLineErrors(string json, string expected)
    {
        var e = Assert.Throws<InputException>(() => HfConfigReader.Parse(json, "/m/config.json"));
        Assert.Contains("/m/config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
