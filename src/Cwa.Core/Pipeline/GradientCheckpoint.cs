using System.Globalization;
using System.IO.Hashing;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Core.Pipeline;

/// <summary>Where a gradient pass stands: how many batches are in the running sums, and the loss over them.</summary>
/// <param name="BatchLossSum">sum of the used batches' mean losses (for avg_loss), over BatchesUsed batches</param>
public sealed record CheckpointPosition(int NextBatch, double LossSum, long Tokens, IReadOnlyList<string> Skipped, double BatchLossSum = 0, int BatchesUsed = 0);

/// <summary>
/// What a save holds, in file order: each entry's name, dtype, element count and what it stands for (for messages).
/// Tensors: the model's tensor count, recorded so a save of another model is refused.
/// </summary>
public sealed record SavedLayout(IReadOnlyList<(string Name, DType DType, long Count, string What)> Entries, int Tensors, bool Fisher)
{
    /// <summary>Gradient sums g.t (and Fisher sums f.t) of every tensor.</summary>
    public static SavedLayout Gradients(IReadOnlyList<ParameterSpec> specs, bool fisher) =>
        new(specs.SelectMany((s, t) => fisher
            ? new[] { ($"g.{t}", DType.F32, s.NumElements, s.Name), ($"f.{t}", DType.F32, s.NumElements, s.Name) }
            : [($"g.{t}", DType.F32, s.NumElements, s.Name)]).ToList(), specs.Count, fisher);
}

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
/// <param name="kind">what the file is, for messages: a resume checkpoint or a shard of a sharded run</param>
public sealed class GradientCheckpoint(string path, string runKey, int every, string kind = GradientCheckpoint.CheckpointKind)
{
    public const string CheckpointKind = "gradient checkpoint", ShardKind = "shard file";

    public string Path { get; } = path;
    public int Every { get; } = every;

    private static readonly string[] PositionKeys = ["next_batch", "loss_sum", "tokens", "tensors", "fisher", "skipped", "batch_loss_sum", "batches_used"];

    /// <param name="fisher">null when the metric keeps no Fisher sums</param>
    /// <param name="extra">further metadata, covered by the checksum (a shard's index and the run's arguments)</param>
    public void Save(CheckpointPosition position, IReadOnlyList<ParameterSpec> specs, TensorReader gradient, TensorReader? fisher,
        IReadOnlyDictionary<string, string>? extra = null)
    {
        using var save = BeginSave(specs, fisher != null);
        var buffer = new float[specs.Max(s => s.NumElements)];
        var other = fisher != null ? new float[buffer.Length] : null;
        for (int t = 0; t < specs.Count; t++)
        {
            var g = buffer.AsSpan(0, (int)specs[t].NumElements);
            gradient(t, g);
            var f = other.AsSpan(0, other == null ? 0 : g.Length);
            fisher?.Invoke(t, f);
            save.Write(t, g, f);
        }
        save.Commit(position, extra);
    }

    /// <summary>
    /// A save whose tensors arrive in any order (a streamed pass completes them block by block) and whose position is
    /// known only at the end: the data is written as it comes; the metadata and the checksum (over the data read back
    /// in file order) go into room reserved in the header when it is committed.
    /// </summary>
    public StreamedSave BeginSave(IReadOnlyList<ParameterSpec> specs, bool fisher) => BeginSave(SavedLayout.Gradients(specs, fisher));

    /// <summary>A save of any layout (a shard of activation statistics has no gradients).</summary>
    public StreamedSave BeginSave(SavedLayout layout) => new(Path, layout, runKey);

    public sealed class StreamedSave : IDisposable
    {
        // Position, arguments and skipped-batch notes of one run: a few KiB; the room is checked when committed.
        private const int HeaderRoom = 1 << 16;
        private readonly SafeTensorsWriter _writer;
        private readonly SavedLayout _layout;
        private readonly string _runKey;

        internal StreamedSave(string path, SavedLayout layout, string runKey)
        {
            (_layout, _runKey) = (layout, runKey);
            _writer = new SafeTensorsWriter(path, layout.Entries.Select(e => (e.Name, e.DType, new[] { e.Count })).ToList(),
                new Dictionary<string, string> { ["run_key"] = runKey }, HeaderRoom);
        }

        /// <summary>One tensor's sums (fisher: empty when the save keeps none).</summary>
        public void Write(int tensor, ReadOnlySpan<float> gradient, ReadOnlySpan<float> fisher)
        {
            _writer.Write($"g.{tensor}", gradient);
            if (_layout.Fisher) _writer.Write($"f.{tensor}", fisher);
        }

        public void Write(string name, ReadOnlySpan<float> values) => _writer.Write(name, values);
        public void Write(string name, ReadOnlySpan<double> values) => _writer.Write(name, values);

        public void Commit(CheckpointPosition position, IReadOnlyDictionary<string, string>? extra = null)
        {
            var meta = new Dictionary<string, string>
            {
                ["run_key"] = _runKey,
                ["next_batch"] = position.NextBatch.ToString(CultureInfo.InvariantCulture),
                ["loss_sum"] = position.LossSum.ToString("R", CultureInfo.InvariantCulture),
                ["tokens"] = position.Tokens.ToString(CultureInfo.InvariantCulture),
                ["tensors"] = _layout.Tensors.ToString(CultureInfo.InvariantCulture),
                ["fisher"] = _layout.Fisher ? "1" : "0",
                ["skipped"] = string.Join('\u001f', position.Skipped),
                ["batch_loss_sum"] = position.BatchLossSum.ToString("R", CultureInfo.InvariantCulture),
                ["batches_used"] = position.BatchesUsed.ToString(CultureInfo.InvariantCulture),
            };
            foreach (var (k, v) in extra ?? new Dictionary<string, string>()) meta[k] = v;
            var hash = Hasher(meta);
            _writer.ReadBackData(bytes => hash.Append(bytes));
            meta["checksum"] = Convert.ToHexStringLower(hash.GetCurrentHash());
            _writer.Commit(meta);
        }

        public void Dispose() => _writer.Dispose();
    }

    /// <summary>
    /// Hands the saved sums to the sinks and returns the position, or null when there is no checkpoint. A checkpoint
    /// of another run, or one that is damaged (checksum, metadata, missing or misshapen tensors), is an input error
    /// naming the file; nothing reaches the sinks unless the whole file checks out.
    /// </summary>
    public CheckpointPosition? Load(IReadOnlyList<ParameterSpec> specs, int batchCount, TensorWriter gradient, TensorWriter? fisher)
    {
        using var saved = Open(SavedLayout.Gradients(specs, fisher != null), batchCount);
        if (saved == null) return null;
        var buffer = new float[specs.Max(s => s.NumElements)];
        for (int t = 0; t < specs.Count; t++)
        {
            var values = buffer.AsSpan(0, (int)specs[t].NumElements);
            saved.Read($"g.{t}", values);
            gradient(t, values);
            if (fisher == null) continue;
            saved.Read($"f.{t}", values);
            fisher(t, values);
        }
        return saved.Position;
    }

    /// <summary>
    /// The saved file, checked whole (run key, metadata, every tensor's shape, the checksum over every byte), kept
    /// open so its sums can be read tensor by tensor; null when there is none.
    /// </summary>
    public SavedSums? Open(SavedLayout layout, int batchCount)
    {
        if (!File.Exists(Path)) return null;
        var f = SafeTensorsFile.Open(Path);
        try
        {
            return new SavedSums(f, Check(f, layout, batchCount));
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    /// <summary>A checked save: its position and metadata, and its sums tensor by tensor.</summary>
    public sealed class SavedSums(SafeTensorsFile file, CheckpointPosition position) : IDisposable
    {
        public CheckpointPosition Position => position;
        public IReadOnlyDictionary<string, string> Metadata => file.Metadata;
        public string Path => file.Path;
        public void Read(string name, Span<float> into) => file.Read(name, into);
        public void ReadRange(string name, long start, Span<float> into) => file.ReadRange(name, start, into);
        public void Read(string name, Span<double> into) => file.Read(name, into);
        public void Dispose() => file.Dispose();
    }

    private CheckpointPosition Check(SafeTensorsFile f, SavedLayout layout, int batchCount)
    {
        bool fisher = layout.Fisher;
        if (!f.Metadata.TryGetValue("run_key", out var key) || key != runKey)
            throw new InputException(kind == ShardKind
                ? $"{Path}: this shard was computed for another run (model weights, data or arguments differ)"
                : $"{Path}: checkpoint belongs to a different run (model weights, data or arguments changed); delete it or drop --resume");
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
        Parse<int>(meta, "tensors", int.TryParse, n => n == layout.Tensors);
        bool hasFisher = Parse<int>(meta, "fisher", int.TryParse, n => n is 0 or 1) == 1;
        if (hasFisher != fisher) throw Damaged($"metadata 'fisher' is {meta["fisher"]} but this run {(fisher ? "needs" : "keeps no")} Fisher sums");
        foreach (var (name, dtype, count, what) in layout.Entries)
        {
            if (!f.Contains(name)) throw Damaged($"tensor {name} ({what}) is missing");
            var info = f.Info(name);
            if (info.DType != dtype || info.ElementCount != count)
                throw Damaged($"tensor {name} holds {info.ElementCount} {info.DType} values, {what} needs {count} {dtype}");
        }
        var hash = Hasher(meta);
        foreach (var name in layout.Entries.Select(e => e.Name))
        {
            long bytes = f.Info(name).ElementCount * DTypeInfo.Size(f.Info(name).DType);
            for (long o = 0; o < bytes; o += 1 << 26) hash.Append(f.RawSlice(name, o, (int)Math.Min(1 << 26, bytes - o)));
        }
        if (!f.Metadata.TryGetValue("checksum", out var sum) || sum != Convert.ToHexStringLower(hash.GetCurrentHash()))
            throw Damaged("checksum mismatch: the file was changed or damaged");
        return new CheckpointPosition(next, lossSum, tokens, meta["skipped"].Length == 0 ? [] : meta["skipped"].Split('\u001f'), batchLossSum, batchesUsed);
    }

    public void Delete()
    {
        if (File.Exists(Path)) File.Delete(Path);
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
        new(kind == ShardKind
            ? $"{Path}: the shard file is damaged ({what}); compute this shard again"
            : $"{Path}: the gradient checkpoint is damaged ({what}); delete it and run without --resume");
}
