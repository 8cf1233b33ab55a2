using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Checkpoints;

namespace Cwa.Core.Models;

/// <summary>
/// Writes a complete Hugging Face model folder with seeded random weights: config.json, sharded safetensors with
/// an index, tokenizer files and generation_config.json. One tensor is in memory at a time, so the 8B-shaped
/// preset can be generated on a machine that could not hold the model twice.
/// </summary>
public delegate void TensorFill(int tensorIndex, ParameterSpec spec, Span<float> destination);

public static class TestModelGenerator
{
    /// <summary>The dtype a preset is written in unless asked otherwise: bf16 for the Llama shapes (as Llama 3.1 ships), else fp32.</summary>
    public static Checkpoints.DType DefaultDType(string preset) => preset.EndsWith("-shape", StringComparison.Ordinal) ? Checkpoints.DType.BF16 : Checkpoints.DType.F32;

    /// <summary>
    /// A preset's model folder. Small presets get a byte-level BPE tokenizer trained on the built-in corpus with the
    /// preset's vocabulary; the 8B shape keeps Llama 3's vocabulary size with a 4,096-token tokenizer. Refused when
    /// the disk lacks room. Returns the config written.
    /// </summary>
    public static ModelConfig WritePreset(string outDir, string preset, Checkpoints.DType dtype, ulong seed, Action<string, double>? progress = null, string? plantSuperWeight = null)
    {
        var config = TestModelPresets.Config(preset, TestModelPresets.Vocabulary(preset));
        int vocab = preset.EndsWith("-shape", StringComparison.Ordinal) ? 0 : config.VocabSize;
        EnsureDiskRoom(outDir, LlamaLayout.ParameterCount(config) * DTypeInfo.Size(dtype));
        var tok = Tokenization.ByteLevelBpeTrainer.Train(Data.BuiltInCorpus.All, vocab > 0 ? vocab : 4096);
        if (vocab > 0) config = config with { BosTokenId = tok.BosId, EosTokenIds = [tok.EosId] };
        // The plant sits on the BOS the tokenizer prepends (a shape preset keeps the real model's bos_token_id in its
        // config, but its generated tokenizer is small and has its own).
        var plant = plantSuperWeight == null ? null : PlantedSuperWeight.Parse(plantSuperWeight, config with { BosTokenId = tok.BosId });
        Write(outDir, config, dtype, (i, spec, values) =>
        {
            Fill(values, spec, seed, i);
            plant?.Apply(spec, values, config);
        }, tok.TokenizerJson, tok.TokenizerConfigJson, minShards: preset == "tiny" ? 2 : 1, progress: progress);
        return config;
    }

    /// <summary>
    /// The built-in trained demo model, optionally with a planted super weight (a trained model whose ground truth
    /// is known), written as a new model folder in the given dtype.
    /// </summary>
    public static ModelConfig WriteFromDemo(string outDir, Checkpoints.DType dtype, string? plantSuperWeight, Action<string, double>? progress = null)
    {
        using var demo = Pipeline.LoadedModel.Open(null, "f32", "cpu", new Engine.EngineOptions(), new Pipeline.NullProgress());
        var config = demo.Config;
        var plant = plantSuperWeight == null ? null : PlantedSuperWeight.Parse(plantSuperWeight, config);
        var weights = demo.Weights;
        Write(outDir, config, dtype, (i, spec, values) =>
        {
            weights[i].AsSpan().CopyTo(values);
            plant?.Apply(spec, values, config);
        }, File.ReadAllText(Path.Combine(demo.Path, "tokenizer.json")), File.ReadAllText(Path.Combine(demo.Path, "tokenizer_config.json")), progress: progress);
        return config;
    }

    /// <summary>Refuses before writing when the folder's file system cannot hold the weights (16 GB for the 8B shape in bf16).</summary>
    private static void EnsureDiskRoom(string outDir, long bytes)
    {
        string? existing = Path.GetFullPath(outDir);
        while (existing != null && !Directory.Exists(existing)) existing = Path.GetDirectoryName(existing);
        if (existing == null) return;
        long free = new DriveInfo(existing).AvailableFreeSpace;
        // A margin for the tokenizer, the index and the file system's own needs.
        if (bytes + (64L << 20) > free)
            throw new InputException($"{outDir}: the model needs about {MemoryEstimate.Format(bytes)} of disk but only {MemoryEstimate.Format(free)} is free there");
    }

    public static void Write(string outDir, ModelConfig config, DType dtype, ulong seed, string tokenizerJson, string tokenizerConfigJson,
        long maxShardBytes = 2L << 30, int minShards = 1, Action<string, double>? progress = null) =>
        Write(outDir, config, dtype, (i, spec, values) => Fill(values, spec, seed, i), tokenizerJson, tokenizerConfigJson, maxShardBytes, minShards, progress);

    /// <summary>Writes a model folder whose tensor values come from fill(tensorIndex, spec, destination).</summary>
    public static void Write(string outDir, ModelConfig config, DType dtype, TensorFill fill, string tokenizerJson, string tokenizerConfigJson,
        long maxShardBytes = 2L << 30, int minShards = 1, Action<string, double>? progress = null)
    {
        Directory.CreateDirectory(outDir);
        var specs = LlamaLayout.Parameters(config);
        var shards = AssignShards(specs, dtype, maxShardBytes, minShards);
        int shardCount = shards.Max() + 1;
        string ShardName(int s) => $"model-{s + 1:D5}-of-{shardCount:D5}.safetensors";
        var weightMap = new JsonObject();
        long totalBytes = 0;
        int done = 0;
        for (int s = 0; s < shardCount; s++)
        {
            var indices = Enumerable.Range(0, specs.Count).Where(i => shards[i] == s).ToList();
            var layout = indices.Select(i => (specs[i].Name, dtype, specs[i].Shape.Select(d => (long)d).ToArray())).ToList();
            using var writer = new SafeTensorsWriter(Path.Combine(outDir, ShardName(s)), layout, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (int i in indices)
            {
                var spec = specs[i];
                var values = new float[spec.NumElements];
                fill(i, spec, values);
                writer.Write(spec.Name, values);
                weightMap[spec.Name] = ShardName(s);
                totalBytes += spec.NumElements * DTypeInfo.Size(dtype);
                progress?.Invoke(spec.Name, ++done / (double)specs.Count);
            }
            writer.Commit();
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = totalBytes }, ["weight_map"] = weightMap };
        var indented = new JsonSerializerOptions { WriteIndented = true };
        WriteText(Path.Combine(outDir, CheckpointFolder.IndexFile), index.ToJsonString(indented));
        WriteText(Path.Combine(outDir, "config.json"), HfConfigWriter.ToJson(config with { TorchDtype = TorchName(dtype) }));
        WriteText(Path.Combine(outDir, "tokenizer.json"), tokenizerJson);
        WriteText(Path.Combine(outDir, "tokenizer_config.json"), tokenizerConfigJson);
        var gen = new JsonObject { ["_from_model_config"] = true };
        if (config.BosTokenId is int bos) gen["bos_token_id"] = bos;
        if (config.EosTokenIds.Count > 0) gen["eos_token_id"] = config.EosTokenIds[0];
        WriteText(Path.Combine(outDir, "generation_config.json"), gen.ToJsonString(indented));
    }

    /// <summary>
    /// N(0, 0.02) for matrices; 1 + 0.1 N(0,1) for norms so their gradients are non-trivial; small biases. Each
    /// block of 2^20 values has its own seeded stream, so large tensors fill on all cores and stay deterministic.
    /// </summary>
    public static void Fill(Span<float> values, ParameterSpec spec, ulong seed, int tensorIndex)
    {
        const int block = 1 << 20;
        bool norm = spec.Role is ParameterRole.InputNorm or ParameterRole.PostAttentionNorm or ParameterRole.FinalNorm;
        int length = values.Length;
        unsafe
        {
            fixed (float* p = values)
            {
                float* basePtr = p;
                Parallel.For(0, (length + block - 1) / block, b =>
                {
                    var rng = SplitMix64.For(seed, tensorIndex, b);
                    for (int j = b * block; j < Math.Min(length, (b + 1) * block); j++)
                    {
                        double g = rng.NextGaussian();
                        basePtr[j] = (float)(norm ? 1 + 0.1 * g : 0.02 * g);
                    }
                });
            }
        }
    }

    /// <summary>Greedy in layout order: a shard closes when it reaches total/minShards or would pass maxShardBytes.</summary>
    private static int[] AssignShards(IReadOnlyList<ParameterSpec> specs, DType dtype, long maxShardBytes, int minShards)
    {
        long total = specs.Sum(s => s.NumElements) * DTypeInfo.Size(dtype);
        long even = (total + minShards - 1) / minShards;
        var result = new int[specs.Count];
        int shard = 0;
        long used = 0;
        for (int i = 0; i < specs.Count; i++)
        {
            long bytes = specs[i].NumElements * DTypeInfo.Size(dtype);
            if (used > 0 && used + bytes > maxShardBytes) { shard++; used = 0; }
            result[i] = shard;
            used += bytes;
            if (used >= even && i < specs.Count - 1) { shard++; used = 0; }
        }
        return result;
    }

    private static string TorchName(DType t) => t switch { DType.BF16 => "bfloat16", DType.F16 => "float16", DType.F64 => "float64", _ => "float32" };

    private static void WriteText(string path, string text) => Reporting.AtomicFile.WriteAllText(path, text);
}
