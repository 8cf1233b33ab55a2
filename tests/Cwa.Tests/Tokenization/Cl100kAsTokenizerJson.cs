using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using Cwa.Core.Tokenization;

namespace Cwa.Tests.Tokenization;

/// <summary>
/// Converts the cl100k_base ranks shipped in Microsoft.ML.Tokenizers.Data.Cl100kBase into a Hugging Face
/// tokenizer.json (byte-level vocab + merges rebuilt from ranks, as transformers' tiktoken converter does), once
/// per test run. Lets us check our tokenizer.json path against the package's own reference tokenizer.
/// </summary>
public sealed class Cl100kAsTokenizerJson : IDisposable
{
    public TempDir Dir { get; } = new();

    public Cl100kAsTokenizerJson()
    {
        var ranks = LoadRanks();
        var vocab = new JsonObject();
        var merges = new List<(int Rank, string Merge)>();
        foreach (var (token, rank) in ranks)
        {
            vocab[ToByteLevel(token)] = rank;
            if (token.Length < 2) continue;
            var parts = Bpe(ranks, token, rank);
            if (parts.Count != 2) throw new InvalidOperationException($"rank {rank} does not split into two parts");
            merges.Add((rank, ToByteLevel(parts[0]) + " " + ToByteLevel(parts[1])));
        }
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 100257, ["content"] = "<|endoftext|>", ["special"] = true }),
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = ByteLevelAlphabet.Llama3Pattern }, ["behavior"] = "Isolated" },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(merges.OrderBy(m => m.Rank).Select(m => (JsonNode)m.Merge).ToArray()),
            },
        };
        File.WriteAllText(Dir.File("tokenizer.json"), root.ToJsonString());
        File.WriteAllText(Dir.File("tokenizer_config.json"), """{"add_bos_token": false, "eos_token": "<|endoftext|>"}""");
    }

    // Tokens as Latin-1 strings: one char per byte, usable as dictionary keys.
    private static Dictionary<string, int> LoadRanks()
    {
        var asm = Assembly.Load("Microsoft.ML.Tokenizers.Data.Cl100kBase");
        string name = asm.GetManifestResourceNames().Single(n => n.EndsWith("cl100k_base.tiktoken.deflate", StringComparison.Ordinal));
        using var stream = new DeflateStream(asm.GetManifestResourceStream(name)!, CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        // The package stores "Capacity: N" and then one base64 token per line, the rank being the line's position.
        var ranks = new Dictionary<string, int>();
        int next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            int rank = space < 0 ? next : int.Parse(line[(space + 1)..]);
            ranks[Encoding.Latin1.GetString(Convert.FromBase64String(space < 0 ? line : line[..space]))] = rank;
            next = rank + 1;
        }
        return ranks;
    }

    private static List<string> Bpe(Dictionary<string, int> ranks, string token, int maxRank)
    {
        var parts = token.Select(c => c.ToString()).ToList();
        while (true)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < parts.Count; i++)
                if (ranks.TryGetValue(parts[i] + parts[i + 1], out int r) && r < bestRank) { best = i; bestRank = r; }
            if (best < 0 || bestRank >= maxRank) return parts;
            parts[best] += parts[best + 1];
            parts.RemoveAt(best + 1);
        }
    }

    private static string ToByteLevel(string latin1) => ByteLevelAlphabet.Encode(Encoding.Latin1.GetBytes(latin1));

    public void Dispose() => Dir.Dispose();
}
