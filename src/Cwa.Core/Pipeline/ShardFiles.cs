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
    /// <param name="backend">where the sums are read when they stayed on a device (sources without host gradients)</param>
    public static void Write(string path, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, IReadOnlyList<ParameterSpec> specs,
        Engine.IBackend backend)
    {
        r = r with { Device = backend.Name };
        using var save = new GradientCheckpoint(path, runKey, 1).BeginSave(specs, s.Fisher != null);
        var g = new float[specs.Max(x => x.NumElements)];
        var f = s.Fisher != null ? new float[g.Length] : [];
        for (int t = 0; t < specs.Count; t++)
        {
            int n = (int)specs[t].NumElements;
            if (s.Gradient != null) s.Gradient[t].CopyTo(g, 0);
            else backend.ReadGradient(t, g.AsSpan(0, n));
            if (s.Fisher != null)
            {
                if (s.Fisher.Sums[t] is { } sum) sum.CopyTo(f, 0);
                else Array.Clear(f, 0, n);
            }
            save.Write(t, g.AsSpan(0, n), f.AsSpan(0, s.Fisher != null ? n : 0));
        }
        Commit(save, runKey, shard, shardBatches, r, s);
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
    public static void WriteActivations(string path, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s, IReadOnlyList<ParameterSpec> specs,
        SensitivityMetric metric)
    {
        var stats = s.Activations ?? throw new InvalidOperationException("no activation statistics");
        using var save = new GradientCheckpoint(path, runKey, 1).BeginSave(Layout(specs, metric, ObdCurvature.Fisher));
        foreach (int t in Observed(specs))
        {
            var raw = stats.Raw(specs[t].Name) ?? throw new CwaException($"the forward pass did not observe the input of {specs[t].Name}");
            save.Write($"a2.{t}", raw.SumSq);
            save.Write($"am.{t}", raw.MaxAbs);
        }
        Commit(save, runKey, shard, shardBatches, r, s, new Dictionary<string, string> { [PeaksKey] = JsonSerializer.Serialize(stats.DownProjPeaks) });
    }

    internal const string PeaksKey = "down_proj_peaks";

    /// <summary>A shard file whose tensors a streamed pass writes as they complete (<see cref="Commit"/> finishes it).</summary>
    public static GradientCheckpoint.StreamedSave Begin(string path, string runKey, IReadOnlyList<ParameterSpec> specs, bool fisher) =>
        new GradientCheckpoint(path, runKey, 1).BeginSave(specs, fisher);

    /// <summary>The shard's position (loss and token sums) and identity, covered by the checksum; the file then appears.</summary>
    /// <param name="r">the run's arguments, with Device the backend that computed the sums (cpu, cuda or ilgpu-cpu), which the merge uses again</param>
    public static void Commit(GradientCheckpoint.StreamedSave save, string runKey, ShardSpec shard, int shardBatches, AnalyzeRequest r, ScoreSources s,
        IReadOnlyDictionary<string, string>? more = null)
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
        foreach (var (k, v) in more ?? new Dictionary<string, string>()) extra[k] = v;
        save.Commit(position, extra);
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
