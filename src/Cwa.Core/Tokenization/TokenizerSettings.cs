using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Models;

namespace Cwa.Core.Tokenization;

/// <summary>What tokenizer_config.json (and config.json as fallback) says about BOS/EOS/PAD.</summary>
public sealed record TokenizerSettings(bool? AddBosToken, string? BosToken, string? EosToken, string? PadToken, int? FallbackBosId, int? FallbackEosId)
{
    public static TokenizerSettings Read(string modelDir, ModelConfig? config)
    {
        string path = Path.Combine(modelDir, "tokenizer_config.json");
        int? bos = config?.BosTokenId;
        int? eos = config?.EosTokenIds.Count > 0 ? config.EosTokenIds[0] : null;
        if (!File.Exists(path)) return new TokenizerSettings(null, null, null, null, bos, eos);
        JsonObject o;
        InputFiles.EnsureRegular(path);
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InputException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new InputException($"{path}: malformed JSON ({e.Message.Split('.')[0]})"); }
        return new TokenizerSettings(
            o["add_bos_token"] is JsonValue v && v.TryGetValue(out bool b) ? b : null,
            Token(o["bos_token"]), Token(o["eos_token"]), Token(o["pad_token"]), bos, eos);
    }

    /// <summary>Special tokens appear either as a string or as {"content": "..."}.</summary>
    private static string? Token(JsonNode? n) => n switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonObject o => o["content"]?.GetValue<string>(),
        _ => null,
    };
}
