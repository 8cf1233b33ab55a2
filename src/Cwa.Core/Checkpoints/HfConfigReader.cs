using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Models;

namespace Cwa.Core.Checkpoints;

/// <summary>Reads a Hugging Face config.json of the Llama family into a ModelConfig, with one-line errors.</summary>
public static class HfConfigReader
{
    public static readonly string[] SupportedModelTypes = ["llama", "mistral", "qwen2"];

    public static ModelConfig Read(string configPath)
    {
        InputFiles.EnsureRegular(configPath);
        if (!File.Exists(configPath)) throw new InputException($"{configPath}: config.json not found (is this a Hugging Face model folder?)");
        return Parse(File.ReadAllText(configPath), configPath);
    }

    public static ModelConfig Parse(string json, string path)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new InputException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InputException($"{path}: malformed JSON ({e.Message.Split('.')[0]})");
        }
        string modelType = Str(root, "model_type", path) ?? throw new InputException($"{path}: missing required key 'model_type'");
        if (!SupportedModelTypes.Contains(modelType))
            throw new InputException($"{path}: model_type '{modelType}' is not supported (supported: {string.Join(", ", SupportedModelTypes)})");
        int hidden = Int(root, "hidden_size", path);
        int heads = Int(root, "num_attention_heads", path);
        int kvHeads = IntOr(root, "num_key_value_heads", path, heads);
        int headDim = IntOr(root, "head_dim", path, heads > 0 && hidden % heads == 0 ? hidden / heads : 0);
        if (hidden <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads % kvHeads != 0 || headDim % 2 != 0)
            throw new InputException($"{path}: inconsistent attention sizes (hidden_size {hidden}, heads {heads}, kv heads {kvHeads}, head_dim {headDim})");
        var config = new ModelConfig
        {
            ModelType = modelType,
            Architecture = (root["architectures"] as JsonArray)?.FirstOrDefault() is JsonValue a && a.TryGetValue(out string? arch) ? arch : "LlamaForCausalLM",
            VocabSize = Positive(root, "vocab_size", path),
            HiddenSize = hidden,
            IntermediateSize = Positive(root, "intermediate_size", path),
            NumLayers = Positive(root, "num_hidden_layers", path),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = Dbl(root, "rms_norm_eps", path, 1e-6),
            RopeTheta = Dbl(root, "rope_theta", path, 10000),
            RopeScaling = ReadRopeScaling(root, path),
            TieWordEmbeddings = Bool(root, "tie_word_embeddings", path, false),
            AttentionBias = modelType == "qwen2" || Bool(root, "attention_bias", path, false),
            MaxPositionEmbeddings = IntOr(root, "max_position_embeddings", path, 2048),
            BosTokenId = root["bos_token_id"] is null ? null : IntOr(root, "bos_token_id", path, 0),
            EosTokenIds = root["eos_token_id"] switch
            {
                null => [],
                JsonArray arr => arr.Select(x => x is JsonValue v && v.TryGetValue(out int id) ? id : throw new InputException($"{path}: 'eos_token_id' must hold whole numbers")).ToArray(),
                _ => [IntOr(root, "eos_token_id", path, 0)],
            },
            TorchDtype = Str(root, "torch_dtype", path) ?? Str(root, "dtype", path),
        };
        if (Bool(root, "mlp_bias", path, false))
            throw new InputException($"{path}: mlp_bias=true is not supported");
        // The engine computes SwiGLU with SiLU: any other activation would run silently as SiLU.
        string act = Str(root, "hidden_act", path) ?? Str(root, "hidden_activation", path) ?? "silu";
        if (act is not ("silu" or "swish"))
            throw new InputException($"{path}: hidden_act '{act}' is not supported (supported: silu)");
        if (!(config.RopeTheta > 0) || double.IsInfinity(config.RopeTheta))
            throw new InputException($"{path}: 'rope_theta' must be a positive number (got {config.RopeTheta})");
        if (!(config.RmsNormEps >= 0) || double.IsInfinity(config.RmsNormEps))
            throw new InputException($"{path}: 'rms_norm_eps' must be zero or positive (got {config.RmsNormEps})");
        return config;
    }

    private static RopeScaling? ReadRopeScaling(JsonObject root, string path)
    {
        if (root["rope_scaling"] is not JsonObject rs) return null;
        string type = Str(rs, "rope_type", path) ?? Str(rs, "type", path) ?? throw new InputException($"{path}: rope_scaling has no rope_type");
        if (type == "default") return null;
        if (type is not ("llama3" or "linear"))
            throw new InputException($"{path}: rope_scaling type '{type}' is not supported (supported: llama3, linear)");
        var scaling = new RopeScaling(type,
            Dbl(rs, "factor", path, 1),
            Dbl(rs, "low_freq_factor", path, 1),
            Dbl(rs, "high_freq_factor", path, 4),
            IntOr(rs, "original_max_position_embeddings", path, 8192));
        foreach (var (key, value) in new[] { ("factor", scaling.Factor), ("low_freq_factor", scaling.LowFreqFactor), ("high_freq_factor", scaling.HighFreqFactor),
                     ("original_max_position_embeddings", (double)scaling.OriginalMaxPositionEmbeddings) })
            if (!(value > 0) || double.IsInfinity(value))
                throw new InputException($"{path}: rope_scaling '{key}' must be a positive number (got {value})");
        // llama3 scaling interpolates between the two factors: equal factors would divide by zero.
        if (type == "llama3" && !(scaling.HighFreqFactor > scaling.LowFreqFactor))
            throw new InputException($"{path}: rope_scaling 'high_freq_factor' ({scaling.HighFreqFactor}) must be larger than 'low_freq_factor' ({scaling.LowFreqFactor})");
        return scaling;
    }

    private static string? Str(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw new InputException($"{path}: '{key}' must be a string"),
    };

    private static int Int(JsonObject o, string key, string path) =>
        o[key] is null ? throw new InputException($"{path}: missing required key '{key}'") : IntOr(o, key, path, 0);

    private static int Positive(JsonObject o, string key, string path)
    {
        int v = Int(o, key, path);
        return v > 0 ? v : throw new InputException($"{path}: '{key}' must be positive (got {v})");
    }

    private static int IntOr(JsonObject o, string key, string path, int fallback) => o[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonValue v when v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue => (int)d,
        _ => throw new InputException($"{path}: '{key}' must be a whole number"),
    };

    private static double Dbl(JsonObject o, string key, string path, double fallback) => o[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out double d) => d,
        _ => throw new InputException($"{path}: '{key}' must be a number"),
    };

    private static bool Bool(JsonObject o, string key, string path, bool fallback) => o[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out bool b) => b,
        _ => throw new InputException($"{path}: '{key}' must be true or false"),
    };
}
