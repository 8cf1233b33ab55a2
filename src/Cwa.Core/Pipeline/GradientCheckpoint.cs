using System.Globalization;
using System.IO.Hashing;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Core.Pipeline;

/// <summary>Where a gradient pass stands: how many batches are in the running sums, and the loss over them.</summary>
/// <param name="BatchLossSum">sum of the used batches' mean losses (for avg_loss), over BatchesUsed batches</param>
public sealed record CheckpointPosition(int NextBatch, double LossSum, long Tokens, IReadOnlyList<string> Skipped, double BatchLossSum = 0, int BatchesUsed = 0);

/// <summary>Copies one tensor's running sum (gradient or Fisher) into a buffer of its size.</summary>
public delegate void TensorReader(int tensor, Span<float> into);

/// <summary>Receives one tensor's saved running sum.</summary>
public delegate void TensorWriter(int tensor, ReadOnlySpan<float> values);

/// <summary>
/// Saves the running gradient (and Fisher) sums every few batches so an interrupted run can continue with
/// --resume. Everything, the position included, lives in one safetensors file written atomically, so a crash
/// during a save leaves the previous checkpoint intact. A run key (the weights' bytes, data and every argument
/// that changes the sums) guards against resuming a different run; a checksum over the metadata and every saved
/// byte refuses a damaged file instead of continuing from garbage.
/// </summary>
public sealed class GradientCheckpoint(string path, string runKey, int every)
{
    public string Path { get; } = path;
    public int Every { get; } = every;

    private static readonly string[] PositionKeys = ["next_batch", "loss_sum", "tokens", "tensors", "fisher", "skipped", "batch_loss_sum", "batches_used"];

    /// <param name="fisher">null when the metric keeps no Fisher sums</param>
    /// <param name="extra">further metadata, covered by the checksum (a shard's index and the run's arguments)</param>
    public void Save(CheckpointPosition position, IReadOnlyList<ParameterSpec> specs, TensorReader gradient, TensorReader? fisher,
        IReadOnlyDictionary<string, string>? extra = null)
    {
        var layout = new List<(string, DType, long[])>();
        for (int t = 0; t < specs.Count; t++)
        {
            layout.Add(($"g.{t}", DType.F32, [specs[t].NumElements]));
            if (fisher != null) layout.Add(($"f.{t}", DType.F32, [specs[t].NumElements]));
        }
        var meta = new Dictionary<string, string>
        {
            ["run_key"] = runKey,
            ["next_batch"] = position.NextBatch.ToString(CultureInfo.InvariantCulture),
            ["loss_sum"] = position.LossSum.ToString("R", CultureInfo.InvariantCulture),
            ["tokens"] = position.Tokens.ToString(CultureInfo.InvariantCulture),
            ["tensors"] = specs.Count.ToString(CultureInfo.InvariantCulture),
            ["fisher"] = fisher != null ? "1" : "0",
            ["skipped"] = string.Join('\u001f', position.Skipped),
            ["batch_loss_sum"] = position.BatchLossSum.ToString("R", CultureInfo.InvariantCulture),
            ["batches_used"] = position.BatchesUsed.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string>()) meta[k] = v;
        var buffer = new float[specs.Max(s => s.NumElements)];
        // The checksum goes into the header, before the data: one pass hashes, a second writes.
        var hash = Hasher(meta);
        ForEachSaved(specs, gradient, fisher, buffer, (_, values) => hash.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values)));
        meta["checksum"] = Convert.ToHexStringLower(hash.GetCurrentHash());
        using var w = new SafeTensorsWriter(Path, layout, meta);
        ForEachSaved(specs, gradient, fisher, buffer, w.Write);
        w.Commit();
    }

    /// <summary>
    /// Hands the saved sums to the sinks and returns the position, or null when there is no checkpoint. A checkpoint
    /// of another run, or one that is damaged (checksum, metadata, missing or misshapen tensors), is an input error
    /// naming the file; nothing reaches the sinks unless the whole file checks out.
    /// </summary>
    public CheckpointPosition? Load(IReadOnlyList<ParameterSpec> specs, int batchCount, TensorWriter gradient, TensorWriter? fisher)
    {
        if (!File.Exists(Path)) return null;
        using var f = SafeTensorsFile.Open(Path);
        if (!f.Metadata.TryGetValue("run_key", out var key) || key != runKey)
            throw new InputException($"{Path}: checkpoint belongs to a different run (model weights, data or arguments changed); delete it or drop --resume");
        var meta = new Dictionary<string, string> { ["run_key"] = key };
        foreach (var k in PositionKeys)
            meta[k] = f.Metadata.TryGetValue(k, out var v) ? v : throw Damaged($"metadata '{k}' is missing");
        foreach (var (k, v) in f.Metadata)
            if (k != "checksum") meta.TryAdd(k, v);
        int next = Parse<int>(meta, "next_batch", int.TryParse, n => n >= 1 && n <= batchCount);
        double lossSum = Parse<double>(meta, "loss_sum", double.TryParse, x => double.IsFinite(x) && x >= 0);
        long tokens = Parse<long>(meta, "tokens", long.TryParse, n => n >= 0);
        double batchLossSum = Parse<double>(meta, "batch_loss_sum", double.TryParse, x => double.IsFinite(x) && x >= 0);
        int batchesUsed = Parse<int>(meta, "batches_used", int.TryParse, n => n >= 0 && n <= next);
        Parse<int>(meta, "tensors", int.TryParse, n => n == specs.Count);
        bool hasFisher = Parse<int>(meta, "fisher", int.TryParse, n => n is 0 or 1) == 1;
        if (hasFisher != (fisher != null)) throw Damaged($"metadata 'fisher' is {meta["fisher"]} but this run {(fisher != null ? "needs" : "keeps no")} Fisher sums");
        var names = new List<string>();
        for (int t = 0; t < specs.Count; t++)
            foreach (var name in hasFisher ? new[] { $"g.{t}", $"f.{t}" } : [$"g.{t}"])
            {
                if (!f.Contains(name)) throw Damaged($"tensor {name} ({specs[t].Name}) is missing");
                var info = f.Info(name);
                if (info.DType != DType.F32 || info.ElementCount != specs[t].NumElements)
                    throw Damaged($"tensor {name} holds {info.ElementCount} {info.DType} values, {specs[t].Name} needs {specs[t].NumElements} F32");
                names.Add(name);
            }
        var hash = Hasher(meta);
        foreach (var name in names)
        {
            long bytes = f.Info(name).ElementCount * 4;
            for (long o = 0; o < bytes; o += 1 << 26) hash.Append(f.RawSlice(name, o, (int)Math.Min(1 << 26, bytes - o)));
        }
        if (!f.Metadata.TryGetValue("checksum", out var sum) || sum != Convert.ToHexStringLower(hash.GetCurrentHash()))
            throw Damaged("checksum mismatch: the file was changed or damaged");
        var buffer = new float[specs.Max(s => s.NumElements)];
        for (int t = 0; t < specs.Count; t++)
        {
            var values = buffer.AsSpan(0, (int)specs[t].NumElements);
            f.Read($"g.{t}", values);
            gradient(t, values);
            if (fisher == null) continue;
            f.Read($"f.{t}", values);
            fisher(t, values);
        }
        return new CheckpointPosition(next, lossSum, tokens, meta["skipped"].Length == 0 ? [] : meta["skipped"].Split('\u001f'), batchLossSum, batchesUsed);
    }

    public void Delete()
    {
        if (File.Exists(Path)) File.Delete(Path);
    }

    private static void ForEachSaved(IReadOnlyList<ParameterSpec> specs, TensorReader gradient, TensorReader? fisher, float[] buffer, Action<string, ReadOnlySpan<float>> use)
    {
        for (int t = 0; t < specs.Count; t++)
        {
            var values = buffer.AsSpan(0, (int)specs[t].NumElements);
            gradient(t, values);
            use($"g.{t}", values);
            if (fisher == null) continue;
            fisher(t, values);
            use($"f.{t}", values);
        }
    }

    /// <summary>XxHash128 seeded with the run key and position, so metadata edits fail the checksum too.</summary>
    private static XxHash128 Hasher(Dictionary<string, string> meta)
    {
        var h = new XxHash128();
        foreach (var k in PositionKeys.Prepend("run_key"))
            h.Append(System.Text.Encoding.UTF8.GetBytes($"{k}={meta[k]}\n"));
        // Further metadata (a shard's index, the run's arguments) is covered too, in a fixed order.
        foreach (var k in meta.Keys.Where(k => k is not ("run_key" or "checksum") && !PositionKeys.Contains(k)).Order(StringComparer.Ordinal))
            h.Append(System.Text.Encoding.UTF8.GetBytes($"{k}={meta[k]}\n"));
        return h;
    }

    private delegate bool TryParser<T>(string s, NumberStyles style, IFormatProvider provider, out T value);

    private T Parse<T>(Dictionary<string, string> meta, string key, TryParser<T> parse, Func<T, bool> valid)
    {
        var style = typeof(T) == typeof(double) ? NumberStyles.Float : NumberStyles.Integer;
        if (parse(meta[key], style, CultureInfo.InvariantCulture, out var v) && valid(v)) return v;
        throw Damaged($"metadata '{key}' has the invalid value '{meta[key]}'");
    }

    private InputException Damaged(string what) =>
        new($"{Path}: the gradient checkpoint is damaged ({what}); delete it and run without --resume");
}
