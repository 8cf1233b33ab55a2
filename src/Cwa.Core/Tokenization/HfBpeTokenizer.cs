using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Cwa.Core.Tokenization;

/// <summary>
/// A Hugging Face tokenizer.json with a byte-level BPE model (Llama 3, Qwen2, SmolLM, GPT-2), encoded by
/// Microsoft.ML.Tokenizers' BpeTokenizer with the file's own split regex and special tokens.
/// </summary>
public sealed class HfBpeTokenizer : ITextTokenizer
{
    private readonly BpeTokenizer _bpe;

    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int PadId { get; }
    public bool AddsBos { get; }

    private readonly string _path;

    private HfBpeTokenizer(BpeTokenizer bpe, int vocabSize, int? bos, int? eos, int? pad, bool addsBos, string path)
    {
        _bpe = bpe; _path = path; VocabSize = vocabSize; BosId = bos; EosId = eos; PadId = pad ?? eos ?? 0; AddsBos = addsBos && bos != null;
    }

    public static HfBpeTokenizer Load(string tokenizerJsonPath, TokenizerSettings settings)
    {
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(tokenizerJsonPath)) as JsonObject ?? throw new InputException($"{tokenizerJsonPath}: not a JSON object"); }
        catch (JsonException e) { throw new InputException($"{tokenizerJsonPath}: malformed JSON ({e.Message.Split('.')[0]})"); }
        if (root["model"] is not JsonObject model) throw new InputException($"{tokenizerJsonPath}: no \"model\" section");
        string type = model["type"]?.GetValue<string>() ?? "BPE";
        if (type != "BPE") throw new InputException($"{tokenizerJsonPath}: tokenizer model type '{type}' is not supported (supported: BPE; SentencePiece via tokenizer.model)");
        if (model["vocab"] is not JsonObject vocabNode) throw new InputException($"{tokenizerJsonPath}: BPE model has no vocab");
        var vocab = vocabNode.Select(kv => new KeyValuePair<string, int>(kv.Key, kv.Value!.GetValue<int>())).ToList();
        var merges = (model["merges"] as JsonArray ?? []).Select(m => m switch
        {
            JsonValue v => v.GetValue<string>(),
            JsonArray a when a.Count == 2 => a[0]!.GetValue<string>() + " " + a[1]!.GetValue<string>(),
            _ => throw new InputException($"{tokenizerJsonPath}: malformed merge entry {m?.ToJsonString()}"),
        }).ToList();
        var added = (root["added_tokens"] as JsonArray ?? [])
            .OfType<JsonObject>()
            .ToDictionary(t => t["content"]!.GetValue<string>(), t => t["id"]!.GetValue<int>());
        string pattern = SplitPattern(root["pre_tokenizer"], tokenizerJsonPath);
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = added,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(SplitRegex(pattern, tokenizerJsonPath), added),
        };
        var bpe = BpeTokenizer.Create(options);
        int vocabSize = Math.Max(vocab.Count == 0 ? 0 : vocab.Max(v => v.Value) + 1, added.Count == 0 ? 0 : added.Values.Max() + 1);
        int? Id(string? token) => token != null && (added.TryGetValue(token, out int i) || vocabNode.ContainsKey(token) && (i = vocabNode[token]!.GetValue<int>()) >= 0) ? i : null;
        int? bos = Id(settings.BosToken) ?? settings.FallbackBosId;
        int? eos = Id(settings.EosToken) ?? settings.FallbackEosId;
        int? pad = Id(settings.PadToken);
        bool addsBos = settings.AddBosToken ?? TemplateAddsBos(root["post_processor"]);
        return new HfBpeTokenizer(bpe, vocabSize, bos, eos, pad, addsBos, tokenizerJsonPath);
    }

    /// <summary>Longest one split match may take: a pattern with catastrophic backtracking fails instead of stalling the run.</summary>
    private static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Text of every character class a split pattern distinguishes, to try a pattern on before it is used.</summary>
    private const string Probe = "The 3 cats' naïve café, 東京 🤖 x = 42;\n\ty += 1 -- \"quoted\" I'm  done.\r\n";

    /// <summary>
    /// The split regex as the pre-tokenizer gets it. The pre-tokenizer restarts after each match, so an empty match
    /// would repeat forever: a pattern that matches the empty string on the probe text is refused, and the
    /// compiled regex may never end an empty match where the search started ((?&lt;!\G)), which cannot change a
    /// non-empty match. Every match runs under a timeout.
    /// </summary>
    private static Regex SplitRegex(string pattern, string path)
    {
        try
        {
            if (new Regex(pattern, RegexOptions.None, MatchTimeout).Matches(Probe).Any(m => m.Length == 0))
                throw new InputException($"{path}: split pattern '{Shown(pattern)}' matches the empty string, so text could not be split");
            return new Regex($"(?:{pattern})(?<!\\G)", RegexOptions.Compiled, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new InputException($"{path}: split pattern '{Shown(pattern)}' is not a valid regular expression ({Shown(e.Message.Split('\n')[0])})");
        }
        catch (RegexMatchTimeoutException)
        {
            throw new InputException($"{path}: split pattern '{Shown(pattern)}' takes over {MatchTimeout.TotalSeconds:0} s on a short text (catastrophic backtracking)");
        }
    }

    /// <summary>Finds the split regex: a Split pre-tokenizer's Regex (Llama 3, Qwen2) or GPT-2's for a bare ByteLevel.</summary>
    private static string SplitPattern(JsonNode? pre, string path)
    {
        if (pre is not JsonObject o) return ByteLevelAlphabet.Gpt2Pattern;
        switch (o["type"]?.GetValue<string>())
        {
            case "Sequence":
                foreach (var p in o["pretokenizers"] as JsonArray ?? [])
                    if (p?["type"]?.GetValue<string>() == "Split")
                        return SplitPattern(p, path);
                return ByteLevelAlphabet.Gpt2Pattern;
            case "Split":
                return o["pattern"]?["Regex"]?.GetValue<string>()
                    ?? (o["pattern"]?["String"]?.GetValue<string>() is string s ? Regex.Escape(s) : throw new InputException($"{path}: Split pre-tokenizer without a pattern"));
            case "ByteLevel":
                return ByteLevelAlphabet.Gpt2Pattern;
            default:
                throw new InputException($"{path}: pre_tokenizer type '{o["type"]}' is not supported (supported: Sequence/Split/ByteLevel)");
        }
    }

    /// <summary>A pattern as an error message shows it: one line (control characters escaped), at most 80 characters.</summary>
    private static string Shown(string pattern)
    {
        var escaped = Regex.Replace(pattern, @"\p{Cc}", m => $"\\u{(int)m.Value[0]:x4}");
        return escaped.Length <= 80 ? escaped : escaped[..77] + "...";
    }

    /// <summary>Llama 3 adds BOS through a TemplateProcessing post-processor that starts with a special token.</summary>
    private static bool TemplateAddsBos(JsonNode? post)
    {
        if (post is not JsonObject o) return false;
        if (o["type"]?.GetValue<string>() == "Sequence")
            return (o["processors"] as JsonArray ?? []).Any(TemplateAddsBos);
        return o["type"]?.GetValue<string>() == "TemplateProcessing"
            && o["single"] is JsonArray single && single.Count > 0 && single[0]?["SpecialToken"] != null;
    }

    public int[] Encode(string text)
    {
        IReadOnlyList<int> ids;
        try { ids = _bpe.EncodeToIds(text); }
        catch (RegexMatchTimeoutException)
        {
            throw new InputException($"{_path}: split pattern takes over {MatchTimeout.TotalSeconds:0} s on one text (catastrophic backtracking)");
        }
        if (!AddsBos) return ids.ToArray();
        var result = new int[ids.Count + 1];
        result[0] = BosId!.Value;
        for (int i = 0; i < ids.Count; i++) result[i + 1] = ids[i];
        return result;
    }

    public string Decode(ReadOnlySpan<int> ids) => _bpe.Decode(ids.ToArray().Where(i => i != BosId), considerSpecialTokens: false);
}
