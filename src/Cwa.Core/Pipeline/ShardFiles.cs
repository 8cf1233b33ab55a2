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
    /// <param name="backend">the backend that computed the sums; they are read from it when they stayed on a device</param>
    public static void Write(string path, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, IReadOnlyList<ParameterSpec> specs,
        Engine.IBackend backend)
    {
        var (position, identity) = Identity(shard, shardBatches, r, s, backend.Name);
        new GradientCheckpoint(path, runKey, 1).Save(position, specs, s.Gradient is { } sums ? (t, into) => sums[t].CopyTo(into) : backend.ReadGradient,
            s.Fisher is not { } fisher ? null : (t, into) => { if (fisher.Sums[t] is { } f) f.CopyTo(into); else into.Clear(); }, identity);
    }

    /// <summary>What a shard of this metric holds: gradient (and Fisher) sums, or the activation statistics of every linear layer.</summary>
    public static SavedLayout Layout(IReadOnlyList<ParameterSpec> specs, SensitivityMetric metric, ObdCurvature curvature) =>
        metric.NeedsActivations()
            ? new SavedLayout(Observed(specs).SelectMany(t => new[]
            {
                ($"a2.{t}", DType.F64, (long)specs[t].Cols, $"{specs[t].Name} input sums of squares"), ($"am.{t}", DType.F32, (long)specs[t].Cols, $"{specs[t].Name} input maxima"),
            }).ToList(), specs.Count, false)
            : SavedLayout.Gradients(specs, metric.NeedsFisher(curvature));

    /// <summary>The linear layers whose inputs a forward pass observes: every 2-D tensor but the embedding (a tied lm_head is the embedding).</summary>
    internal static IEnumerable<int> Observed(IReadOnlyList<ParameterSpec> specs) =>
        Enumerable.Range(0, specs.Count).Where(t => specs[t].Is2D && specs[t].Role != ParameterRole.Embedding);

    /// <summary>A shard of activation statistics: per linear layer its input sums of squares and maxima, the down_proj peaks in the metadata.</summary>
    /// <param name="device">the backend that computed the statistics (cpu, cuda or ilgpu-cpu)</param>
    public static void WriteActivations(string path, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, IReadOnlyList<ParameterSpec> specs,
        SensitivityMetric metric, string device)
    {
        var stats = s.Activations ?? throw new InvalidOperationException("no activation statistics");
        using var save = new GradientCheckpoint(path, runKey, 1).BeginSave(Layout(specs, metric, ObdCurvature.Fisher));
        foreach (int t in Observed(specs))
        {
            var raw = stats.Raw(specs[t].Name) ?? throw new CwaException($"the forward pass did not observe the input of {specs[t].Name}");
            save.Write($"a2.{t}", raw.SumSq);
            save.Write($"am.{t}", raw.MaxAbs);
        }
        Commit(save, shard, shardBatches, r, s, device, new Dictionary<string, string> { [PeaksKey] = JsonSerializer.Serialize(stats.DownProjPeaks) });
    }

    internal const string PeaksKey = "down_proj_peaks";

    /// <summary>A shard file whose tensors a streamed pass writes as they complete (<see cref="Commit"/> finishes it).</summary>
    public static GradientCheckpoint.StreamedSave Begin(string path, string runKey, IReadOnlyList<ParameterSpec> specs, bool fisher) =>
        new GradientCheckpoint(path, runKey, 1).BeginSave(specs, fisher);

    /// <summary>The shard's position (loss and token sums) and identity, covered by the checksum; the file then appears.</summary>
    /// <param name="device">the backend that computed the sums (cpu, cuda or ilgpu-cpu): the merge uses it again</param>
    public static void Commit(GradientCheckpoint.StreamedSave save, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, string device,
        IReadOnlyDictionary<string, string>? more = null)
    {
        var (position, identity) = Identity(shard, shardBatches, r, s, device);
        foreach (var (k, v) in more ?? new Dictionary<string, string>()) identity[k] = v;
        save.Commit(position, identity);
    }

    /// <summary>A shard's position, and the metadata that says which shard of which run it is.</summary>
    private static (CheckpointPosition Position, Dictionary<string, string> Identity) Identity(ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s,
        string device)
    {
        int used = shardBatches - s.SkippedBatches.Count;
        var position = new CheckpointPosition(shardBatches, s.CalibrationLoss * s.CalibrationTokens, s.CalibrationTokens, s.SkippedBatches, s.MeanBatchLoss * used, used);
        var identity = new Dictionary<string, string>
        {
            ["shard_index"] = shard.Index.ToString(CultureInfo.InvariantCulture),
            ["shard_count"] = shard.Count.ToString(CultureInfo.InvariantCulture),
            ["input_tokens"] = s.CalibrationInputTokens.ToString(CultureInfo.InvariantCulture),
            ["sequences"] = s.CalibrationSequences.ToString(CultureInfo.InvariantCulture),
            // Paths made absolute: the merge job may start in another folder.
            ["request"] = JsonSerializer.Serialize(r with
            {
                Shard = null, OutDir = "results", Device = device, Model = Full(r.Model), DataFile = Full(r.DataFile), EvalFile = Full(r.EvalFile),
                KnownWeights = r.KnownWeights == "builtin" ? "builtin" : Full(r.KnownWeights),
            }),
        };
        return (position, identity);
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

    /// <summary>Every shard's sums added into model-sized host arrays (the in-memory merge).</summary>
    public static ScoreSources Merge(ShardSet set, IReadOnlyList<ParameterSpec> specs, bool fisherNeeded)
    {
        var gradient = specs.Select(s => new float[s.NumElements]).ToArray();
        var fisher = fisherNeeded ? new FisherAccumulator(specs.Select(s => (float[]?)new float[s.NumElements]).ToArray()) : null;
        for (int t = 0; t < specs.Count; t++) set.Sum(t, gradient[t], fisher?.Sums[t]);
        return set.Sources(gradient, fisher);
    }

    internal static IReadOnlyDictionary<string, string> Metadata(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: shard file not found");
        using var f = SafeTensorsFile.Open(path);
        return f.Metadata.ToDictionary();
    }
}
