using System.IO.Hashing;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Models;

namespace Cwa.Core.Checkpoints;

/// <summary>
/// A Hugging Face model folder: config.json plus one or more safetensors shards (model.safetensors.index.json
/// maps tensor names to shards). Tensor reads are routed to the right memory-mapped shard.
/// </summary>
public sealed class CheckpointFolder : ITensorSource, IDisposable
{
    public const string IndexFile = "model.safetensors.index.json";

    private readonly List<SafeTensorsFile> _shards;
    private readonly Dictionary<string, SafeTensorsFile> _byTensor;

    public string Directory { get; }
    public ModelConfig Config { get; }
    public IReadOnlyList<string> ShardPaths => _shards.Select(s => s.Path).ToList();
    public IReadOnlyDictionary<string, string> ShardHeaderSha256 => _shards.ToDictionary(s => System.IO.Path.GetFileName(s.Path), s => s.HeaderSha256);
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    private CheckpointFolder(string dir, ModelConfig config, List<SafeTensorsFile> shards, Dictionary<string, SafeTensorsFile> byTensor)
    {
        Directory = dir; Config = config; _shards = shards; _byTensor = byTensor;
    }

    public static CheckpointFolder Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
            throw new InputException(File.Exists(dir) ? $"{dir}: is a file; --model expects a model folder" : $"model folder not found: {dir}");
        var config = HfConfigReader.Read(System.IO.Path.Combine(dir, "config.json"));
        var shardNames = ShardFiles(dir);
        var shards = new List<SafeTensorsFile>();
        var byTensor = new Dictionary<string, SafeTensorsFile>();
        try
        {
            foreach (var name in shardNames)
            {
                var f = SafeTensorsFile.Open(System.IO.Path.Combine(dir, name));
                shards.Add(f);
                foreach (var t in f.Names)
                    if (!byTensor.TryAdd(t, f))
                        throw new InputException($"{f.Path}: tensor '{t}' is also stored in {System.IO.Path.GetFileName(byTensor[t].Path)}");
            }
            return new CheckpointFolder(dir, config, shards, byTensor);
        }
        catch
        {
            foreach (var s in shards) s.Dispose();
            throw;
        }
    }

    private static List<string> ShardFiles(string dir)
    {
        string index = System.IO.Path.Combine(dir, IndexFile);
        InputFiles.EnsureRegular(index);
        if (File.Exists(index))
        {
            JsonObject? map;
            try { map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject; }
            catch (JsonException e) { throw new InputException($"{index}: malformed JSON ({e.Message.Split('.')[0]})"); }
            if (map == null) throw new InputException($"{index}: no weight_map object");
            var files = map.Select(kv => kv.Value?.GetValue<string>() ?? "").Distinct().OrderBy(f => f, StringComparer.Ordinal).ToList();
            foreach (var f in files)
            {
                string shard = System.IO.Path.Combine(dir, f);
                if (f.Length > 0 && !f.Contains('/') && !f.Contains('\\') && System.IO.Directory.Exists(shard))
                    throw new InputException($"{index}: shard '{f}' listed in weight_map is a directory, not a safetensors file");
                if (f.Length == 0 || f.Contains('/') || f.Contains('\\') || !File.Exists(shard))
                    throw new InputException($"{index}: shard '{f}' listed in weight_map is missing");
            }
            return files;
        }
        if (File.Exists(System.IO.Path.Combine(dir, "model.safetensors"))) return ["model.safetensors"];
        var all = System.IO.Directory.GetFiles(dir, "*.safetensors").Select(System.IO.Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (all.Count == 0) throw new InputException($"{dir}: no *.safetensors weights found (only safetensors checkpoints are supported)");
        return all!;
    }

    /// <summary>
    /// Checks every tensor the architecture needs exists with the shape config.json implies, and that the checkpoint
    /// holds no block tensor the architecture would silently ignore (layers past num_hidden_layers, biases that
    /// config.json does not declare).
    /// </summary>
    public void ValidateLayout()
    {
        var specs = LlamaLayout.Parameters(Config);
        var expected = specs.Select(s => s.Name).ToHashSet();
        string config = System.IO.Path.Combine(Directory, "config.json");
        foreach (var name in _byTensor.Keys.Where(n => !expected.Contains(n) && n.StartsWith("model.layers.", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            if (name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue; // a buffer older checkpoints saved; recomputed here
            var parts = name.Split('.');
            if (parts.Length > 2 && int.TryParse(parts[2], out int layer) && layer >= Config.NumLayers)
                throw new InputException($"{config}: num_hidden_layers is {Config.NumLayers} but {ShardOf(name)} holds {name}; config.json does not belong to these weights");
            if (name.EndsWith("_proj.bias", StringComparison.Ordinal))
                throw new InputException(name.Contains("self_attn.q_proj") || name.Contains("self_attn.k_proj") || name.Contains("self_attn.v_proj")
                    ? $"{config}: attention_bias is false but {ShardOf(name)} holds {name}; set attention_bias to true if the model uses it"
                    : $"{ShardOf(name)}: {name} is a bias this architecture does not have (only q/k/v biases are supported)");
            throw new InputException($"{ShardOf(name)}: tensor {name} is not part of the {Config.ModelType} architecture config.json describes");
        }
        foreach (var spec in specs)
        {
            if (!_byTensor.TryGetValue(spec.Name, out var f))
                throw new InputException($"{Directory}: tensor {spec.Name} is missing from the checkpoint" +
                    (spec.Role == ParameterRole.LmHead ? " (config.json says tie_word_embeddings is false)" : ""));
            var shape = f.Info(spec.Name).Shape;
            if (!shape.SequenceEqual(spec.Shape.Select(d => (long)d)))
                throw new InputException($"{f.Path}: tensor {spec.Name} has shape [{string.Join(", ", shape)}] but config.json implies [{string.Join(", ", spec.Shape)}]");
        }
    }

    /// <summary>First flat index holding NaN or Inf, or -1.</summary>
    public long FindNonFinite(string name)
    {
        var values = new float[Shard(name).Info(name).ElementCount];
        Read(name, values);
        for (long i = 0; i < values.LongLength; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    /// <summary>
    /// Hex XxHash3 over every shard's bytes, in shard order with their names: the identity of the weights
    /// themselves (the header hashes in the manifest only identify shapes and offsets).
    /// </summary>
    public string ContentHash()
    {
        var h = new XxHash3();
        foreach (var s in _shards)
        {
            h.Append(System.Text.Encoding.UTF8.GetBytes(System.IO.Path.GetFileName(s.Path)));
            h.Append(BitConverter.GetBytes(s.ContentHash()));
        }
        return Convert.ToHexStringLower(h.GetCurrentHash());
    }

    public long TotalParameters => _shards.Sum(s => s.Names.Sum(n => s.Info(n).ElementCount));

    private SafeTensorsFile Shard(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f : throw new InputException($"{Directory}: tensor {name} is missing from the checkpoint");

    public bool Contains(string name) => _byTensor.ContainsKey(name);
    public long[] Shape(string name) => Shard(name).Shape(name);
    public DType StoredType(string name) => Shard(name).StoredType(name);
    public string ShardOf(string name) => Shard(name).Path;
    public ReadOnlySpan<byte> RawBytes(string name) => Shard(name).RawBytes(name);
    public void Read(string name, Span<float> destination) => Shard(name).Read(name, destination);
    public void Read(string name, Span<double> destination) => Shard(name).Read(name, destination);
    public void ReadRange(string name, long start, Span<float> destination) => Shard(name).ReadRange(name, start, destination);
    internal void Prefetch(string name, PageWarmer warmer) => Shard(name).Prefetch(name, warmer);

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
    }
}
