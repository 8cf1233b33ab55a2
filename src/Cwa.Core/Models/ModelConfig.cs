namespace Cwa.Core.Models;

/// <summary>Rotary scaling as written in config.json ("llama3" of Llama 3.1; "linear"; "dynamic" is rejected).</summary>
public sealed record RopeScaling(
    string Type,
    double Factor,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>Architecture hyper-parameters of a Llama-family decoder (llama, mistral, qwen2).</summary>
public sealed record ModelConfig
{
    /// <summary>HF "model_type": llama, mistral or qwen2.</summary>
    public required string ModelType { get; init; }
    /// <summary>HF "architectures"[0], e.g. LlamaForCausalLM.</summary>
    public string Architecture { get; init; } = "LlamaForCausalLM";
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    /// <summary>Per-head dimension; HiddenSize / NumHeads unless config.json says otherwise.</summary>
    public required int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>q/k/v projections carry biases (Qwen2, or llama with attention_bias=true).</summary>
    public bool AttentionBias { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>HF "torch_dtype" (bfloat16, float16, float32) or null.</summary>
    public string? TorchDtype { get; init; }

    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
}
