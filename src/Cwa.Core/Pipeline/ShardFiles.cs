using System.Globalization;
using System.Text.Json;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// The partial sums of one shard (gradient sums, Fisher sums, loss and token counts) in the gradient checkpoint's
/// format: one safetensors file with the run key, a checksum, the shard's index and count and the run's arguments; and
/// their merge, which checks that every shard of 1..N is there exactly once and adds the sums in shard order.
/// </summary>
public static class ShardFiles
{
    public static void Write(string path, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, IReadOnlyList<ParameterSpec> specs)
    {
        int used = shardBatches - s.SkippedBatches.Count;
        var position = new CheckpointPosition(shardBatches, s.CalibrationLoss * s.CalibrationTokens, s.CalibrationTokens, s.SkippedBatches, s.MeanBatchLoss * used, used);
        var extra = new Dictionary<string, string>
        {
            ["shard_index"] = shard.Index.ToString(CultureInfo.InvariantCulture),
            ["shard_count"] = shard.Count.ToString(CultureInfo.InvariantCulture),
            ["input_tokens"] = s.CalibrationInputTokens.ToString(CultureInfo.InvariantCulture),
            ["sequences"] = s.CalibrationSequences.ToString(CultureInfo.InvariantCulture),
            // Paths made absolute: the merge job may start in another folder.
            ["request"] = JsonSerializer.Serialize(r with
            {
                Shard = null, OutDir = "results", Model = Full(r.Model), DataFile = Full(r.DataFile), EvalFile = Full(r.EvalFile), KnownWeights = r.KnownWeights == "builtin" ? "builtin" : Full(r.KnownWeights),
            }),
        };
        new GradientCheckpoint(path, runKey, 1).Save(position, specs, (t, into) => s.Gradient![t].CopyTo(into),
            s.Fisher == null ? null : (t, into) => { if (s.Fisher.Sums[t] is { } f) f.CopyTo(into); else into.Clear(); }, extra);
    }

    private static string? Full(string? path) => path == null ? null : Path.GetFullPath(path);

    /// <summary>The analyze arguments a shard was computed with (every shard of a run carries the same).</summary>
    public static AnalyzeRequest Request(string path)
    {
        var meta = Metadata(path);
        try
        {
            return JsonSerializer.Deserialize<AnalyzeRequest>(meta.TryGetValue("request", out var json) ? json : throw new JsonException("no request"))
                ?? throw new JsonException("empty request");
        }
        catch (JsonException e) { throw new InputException($"{path}: not a cwa shard file ({e.Message.Split('\n')[0]})"); }
    }

    public static ScoreSources Merge(IReadOnlyList<string> paths, string runKey, IReadOnlyList<ParameterSpec> specs, bool fisherNeeded, int totalBatches)
    {
        var byIndex = new SortedDictionary<int, string>();
        var metadata = new Dictionary<string, IReadOnlyDictionary<string, string>>();
        int count = 0;
        foreach (var p in paths)
        {
            var meta = metadata[p] = Metadata(p);
            if (!meta.TryGetValue("run_key", out var key) || key != runKey)
                throw new InputException($"{p}: this shard was computed for another run (model weights, data or arguments differ from the other shards')");
            int index = int.TryParse(meta.GetValueOrDefault("shard_index"), out int i) ? i : throw new InputException($"{p}: not a cwa shard file (no shard_index)");
            int n = int.TryParse(meta.GetValueOrDefault("shard_count"), out int c) ? c : throw new InputException($"{p}: not a cwa shard file (no shard_count)");
            if (count != 0 && n != count) throw new InputException($"{p}: is shard {index} of {n}, but {byIndex.First().Value} is of {count}");
            count = n;
            if (!byIndex.TryAdd(index, p)) throw new InputException($"shard {index} of {n} is given twice ({byIndex[index]} and {p})");
        }
        var missing = Enumerable.Range(1, count).Where(i => !byIndex.ContainsKey(i)).ToList();
        if (missing.Count > 0) throw new InputException($"shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} of {count} {(missing.Count > 1 ? "are" : "is")} missing");

        var gradient = specs.Select(s => new float[s.NumElements]).ToArray();
        var fisher = fisherNeeded ? new FisherAccumulator(specs.Select(s => (float[]?)new float[s.NumElements]).ToArray()) : null;
        double lossSum = 0, batchLossSum = 0;
        long tokens = 0, inputTokens = 0;
        int used = 0, sequences = 0;
        var skipped = new List<string>();
        // Fixed order (shard 1, 2, ...): the merged sums do not depend on the order the files were named in.
        foreach (var (_, p) in byIndex)
        {
            var pos = new GradientCheckpoint(p, runKey, 1).Load(specs, totalBatches,
                (t, v) => System.Numerics.Tensors.TensorPrimitives.Add(gradient[t], v, gradient[t]),
                fisher == null ? null : (t, v) => System.Numerics.Tensors.TensorPrimitives.Add(fisher.Sums[t]!, v, fisher.Sums[t]!))!;
            (lossSum, tokens, batchLossSum, used) = (lossSum + pos.LossSum, tokens + pos.Tokens, batchLossSum + pos.BatchLossSum, used + pos.BatchesUsed);
            skipped.AddRange(pos.Skipped);
            var meta = metadata[p];
            inputTokens += long.Parse(meta["input_tokens"], CultureInfo.InvariantCulture);
            sequences += int.Parse(meta["sequences"], CultureInfo.InvariantCulture);
        }
        return new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / used, CalibrationTokens = tokens, CalibrationInputTokens = inputTokens,
            CalibrationSequences = sequences, Gradient = gradient, Fisher = fisher, SkippedBatches = skipped,
        };
    }

    private static IReadOnlyDictionary<string, string> Metadata(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: shard file not found");
        using var f = SafeTensorsFile.Open(path);
        return f.Metadata.ToDictionary();
    }
}
