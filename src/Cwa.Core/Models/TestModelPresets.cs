namespace Cwa.Core.Models;

/// <summary>Architectures for generated models. Vocabulary comes from the tokenizer the model is paired with.</summary>
public static class TestModelPresets
{
    public static readonly string[] Names = ["tiny", "small", "demo", "llama-3.1-8b-shape", "llama-3.1-70b-shape"];

    /// <summary>The vocabulary a preset is generated with (the real models' for the -shape presets).</summary>
    public static int Vocabulary(string preset) => preset switch { "tiny" => 512, "small" => 8192, "demo" => 2048, _ => 128256 };

    public static ModelConfig Config(string preset, int vocabSize) => preset switch
    {
        "tiny" => Llama(vocabSize, hidden: 64, layers: 2, heads: 4, kv: 2, ffn: 176),
        "small" => Llama(vocabSize, hidden: 512, layers: 8, heads: 8, kv: 4, ffn: 1408),
        "demo" => Llama(vocabSize, hidden: 256, layers: 4, heads: 8, kv: 4, ffn: 688),
        "llama-3.1-8b-shape" => Llama(128256, hidden: 4096, layers: 32, heads: 32, kv: 8, ffn: 14336) with
        {
            RopeTheta = 500000,
            RopeScaling = new RopeScaling("llama3", 8, 1, 4, 8192),
            MaxPositionEmbeddings = 131072,
            BosTokenId = 128000,
            EosTokenIds = [128001],
        },
        // Llama-3.1-70B: 140 GB of bf16 weights, the model layer streaming puts on one 80 GB GPU.
        "llama-3.1-70b-shape" => Config("llama-3.1-8b-shape", vocabSize) with { HiddenSize = 8192, NumLayers = 80, NumHeads = 64, IntermediateSize = 28672, HeadDim = 128 },
        _ => throw new InputException($"unknown preset '{preset}' (valid: {string.Join(", ", Names)})"),
    };

    private static ModelConfig Llama(int vocab, int hidden, int layers, int heads, int kv, int ffn) => new()
    {
        ModelType = "llama",
        VocabSize = vocab,
        HiddenSize = hidden,
        IntermediateSize = ffn,
        NumLayers = layers,
        NumHeads = heads,
        NumKvHeads = kv,
        HeadDim = hidden / heads,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        MaxPositionEmbeddings = 2048,
        TieWordEmbeddings = false,
    };
}
