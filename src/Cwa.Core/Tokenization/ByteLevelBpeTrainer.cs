using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Cwa.Core.Tokenization;

/// <summary>The files a trained tokenizer consists of.</summary>
public sealed record TrainedTokenizer(string TokenizerJson, string TokenizerConfigJson, int VocabSize, int BosId, int EosId, int PadId);

/// <summary>
/// Trains a GPT-2/Llama-3 style byte-level BPE on texts and writes it as a Hugging Face tokenizer.json, so test and
/// demo models carry a real tokenizer that transformers can load too. Merges are chosen greedily by pair frequency
/// with ties broken by the smaller pair of ids, so the result is deterministic.
/// </summary>
public static class ByteLevelBpeTrainer
{
    public const string Bos = "<|begin_of_text|>", Eos = "<|end_of_text|>", Pad = "<|pad|>";

    public static TrainedTokenizer Train(IEnumerable<string> texts, int vocabSize)
    {
        if (vocabSize < 259) throw new InputException($"vocabulary size {vocabSize} is too small (byte-level BPE needs at least 256 + 3 special tokens)");
        var split = new Regex(ByteLevelAlphabet.Llama3Pattern, RegexOptions.Compiled);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (Match m in split.Matches(text))
            {
                string w = ByteLevelAlphabet.Encode(Encoding.UTF8.GetBytes(m.Value));
                counts[w] = counts.GetValueOrDefault(w) + 1;
            }
        var charToByte = new Dictionary<char, int>();
        for (int b = 0; b < 256; b++) charToByte[ByteLevelAlphabet.ByteToChar[b]] = b;
        var words = counts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (Symbols: kv.Key.Select(c => charToByte[c]).ToList(), Count: kv.Value)).ToList();
        var tokens = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.ByteToChar[b].ToString()).ToList();
        var merges = new List<string>();
        int targetMerges = vocabSize - 3 - 256;
        var pairCounts = new Dictionary<long, long>();
        while (merges.Count < targetMerges)
        {
            pairCounts.Clear();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    long key = ((long)symbols[i] << 32) | (uint)symbols[i + 1];
                    pairCounts[key] = pairCounts.GetValueOrDefault(key) + count;
                }
            long best = -1, bestCount = 1;
            foreach (var (key, c) in pairCounts)
                if (c > bestCount || (c == bestCount && best >= 0 && key < best)) { best = key; bestCount = c; }
            if (best < 0) break; // nothing occurs twice any more
            int a = (int)(best >> 32), b2 = (int)(best & 0xFFFFFFFF), merged = tokens.Count;
            tokens.Add(tokens[a] + tokens[b2]);
            merges.Add(tokens[a] + " " + tokens[b2]);
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == a && symbols[i + 1] == b2)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
        }
        int bos = tokens.Count, eos = bos + 1, pad = bos + 2;
        return new TrainedTokenizer(TokenizerJson(tokens, merges, bos, eos, pad), TokenizerConfigJson(), tokens.Count + 3, bos, eos, pad);
    }

    private static string TokenizerJson(List<string> tokens, List<string> merges, int bos, int eos, int pad)
    {
        var vocab = new JsonObject();
        for (int i = 0; i < tokens.Count; i++) vocab[tokens[i]] = i;
        JsonObject Added(int id, string content) => new()
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false,
            ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
        };
        JsonObject Special(string id) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };
        JsonObject Seq(string id) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Added(bos, Bos), Added(eos, Eos), Added(pad, Pad)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = ByteLevelAlphabet.Llama3Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special(Bos), Seq("A")),
                ["pair"] = new JsonArray(Special(Bos), Seq("A"), Special(Bos), Seq("B")),
                ["special_tokens"] = new JsonObject { [Bos] = new JsonObject { ["id"] = Bos, ["ids"] = new JsonArray(bos), ["tokens"] = new JsonArray(Bos) } },
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    private static string TokenizerConfigJson() => new JsonObject
    {
        ["add_bos_token"] = true,
        ["add_eos_token"] = false,
        ["bos_token"] = Bos,
        ["eos_token"] = Eos,
        ["pad_token"] = Pad,
        ["model_max_length"] = 2048,
        ["tokenizer_class"] = "PreTrainedTokenizerFast",
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
