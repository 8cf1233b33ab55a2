using System.Globalization;
using System.Numerics.Tensors;
using Cwa.Core.Models;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// The shard files of one sharded run, checked and held open: every shard of 1..N exactly once, all of this run
/// (run key), each intact (checksum). Their sums are added tensor by tensor in shard order (1, 2, ...), so the merged
/// sums do not depend on the order the files were named in, and a streamed merge never holds more than one tensor.
/// </summary>
public sealed class ShardSet : IDisposable
{
    private readonly List<GradientCheckpoint.SavedSums> _shards;
    private float[] _buffer = [];

    private ShardSet(List<GradientCheckpoint.SavedSums> shards) => _shards = shards;

    public static ShardSet Open(IReadOnlyList<string> paths, string runKey, SavedLayout layout, int totalBatches)
    {
        var byIndex = new SortedDictionary<int, string>();
        int count = 0;
        foreach (var p in paths)
        {
            var meta = ShardFiles.Metadata(p);
            if (!meta.TryGetValue("run_key", out var key) || key != runKey)
                throw new InputException($"{p}: this shard was computed for another run (model weights, data or arguments differ from the other shards')");
            int index = int.TryParse(meta.GetValueOrDefault("shard_index"), out int i) ? i : throw new InputException($"{p}: not a cwa shard file (no shard_index)");
            int n = int.TryParse(meta.GetValueOrDefault("shard_count"), out int c) ? c : throw new InputException($"{p}: not a cwa shard file (no shard_count)");
            if (n < 1 || index < 1 || index > n) throw new InputException($"{p}: not a valid cwa shard file (shard {index} of {n})");
            if (count != 0 && n != count) throw new InputException($"{p}: is shard {index} of {n}, but {byIndex.First().Value} is of {count}");
            count = n;
            if (!byIndex.TryAdd(index, p)) throw new InputException($"shard {index} of {n} is given twice ({byIndex[index]} and {p})");
        }
        var missing = Enumerable.Range(1, count).Where(i => !byIndex.ContainsKey(i)).ToList();
        if (missing.Count > 0) throw new InputException($"shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} of {count} {(missing.Count > 1 ? "are" : "is")} missing");
        var opened = new List<GradientCheckpoint.SavedSums>();
        try
        {
            foreach (var (_, p) in byIndex)
                opened.Add(new GradientCheckpoint(p, runKey, 1, GradientCheckpoint.ShardKind).Open(layout, totalBatches) ?? throw new InputException($"{p}: shard file not found"));
        }
        catch
        {
            foreach (var s in opened) s.Dispose();
            throw;
        }
        return new ShardSet(opened);
    }

    /// <summary>Tensor t's gradient (and Fisher) sums over every shard, into the given buffers (overwritten).</summary>
    public void Sum(int t, Span<float> gradient, Span<float> fisher)
    {
        gradient.Clear();
        fisher.Clear();
        foreach (var shard in _shards)
        {
            Add(shard, $"g.{t}", gradient);
            if (fisher.Length > 0) Add(shard, $"f.{t}", fisher);
        }
    }

    /// <summary>Adds a saved tensor into sum through one small buffer (a vocabulary tensor is gigabytes at 8B).</summary>
    private void Add(GradientCheckpoint.SavedSums shard, string name, Span<float> sum)
    {
        if (_buffer.Length == 0) _buffer = new float[1 << 22];
        for (long o = 0; o < sum.Length; o += _buffer.Length)
        {
            int n = (int)Math.Min(_buffer.Length, sum.Length - o);
            var part = _buffer.AsSpan(0, n);
            shard.ReadRange(name, o, part);
            var into = sum.Slice((int)o, n);
            TensorPrimitives.Add(into, part, into);
        }
    }

    /// <summary>Every shard's activation statistics merged in shard order (sums add, maxima take the larger).</summary>
    public ActivationStats Activations(IReadOnlyList<ParameterSpec> specs)
    {
        var stats = new ActivationStats();
        foreach (var shard in _shards)
        {
            foreach (int t in ShardFiles.Observed(specs))
            {
                var sumSq = new double[specs[t].Cols];
                var maxAbs = new float[specs[t].Cols];
                shard.Read($"a2.{t}", sumSq);
                shard.Read($"am.{t}", maxAbs);
                stats.Merge(specs[t].Name, sumSq, maxAbs);
            }
            List<DownProjPeak> peaks;
            try
            {
                peaks = System.Text.Json.JsonSerializer.Deserialize<List<DownProjPeak>>(shard.Metadata.GetValueOrDefault(ShardFiles.PeaksKey) ?? "[]") ?? [];
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new InputException($"{shard.Path}: the down_proj peaks in the shard's metadata are not valid ({e.Message.Split('\n')[0]})");
            }
            foreach (var p in peaks) stats.Merge(p);
        }
        return stats;
    }

    /// <summary>
    /// The merged run's loss and token counts, with the given merged sums; a streamed merge gives none, only the
    /// gradients it captured for the selected weights.
    /// </summary>
    public ScoreSources Sources(float[][]? gradient, FisherAccumulator? fisher, IReadOnlyDictionary<Ranking.ScoredIndex, float>? captured = null,
        ActivationStats? activations = null)
    {
        double lossSum = 0, batchLossSum = 0;
        long tokens = 0, inputTokens = 0;
        int used = 0, sequences = 0;
        var skipped = new List<string>();
        for (int i = 0; i < _shards.Count; i++)
        {
            var shard = _shards[i];
            var pos = shard.Position;
            (lossSum, tokens, batchLossSum, used) = (lossSum + pos.LossSum, tokens + pos.Tokens, batchLossSum + pos.BatchLossSum, used + pos.BatchesUsed);
            // A shard numbers its own batches: say which shard a skipped one belongs to.
            skipped.AddRange(pos.Skipped.Select(note => $"shard {i + 1}, {note}"));
            inputTokens += long.Parse(shard.Metadata["input_tokens"], CultureInfo.InvariantCulture);
            sequences += int.Parse(shard.Metadata["sequences"], CultureInfo.InvariantCulture);
        }
        return new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / used, CalibrationTokens = tokens, CalibrationInputTokens = inputTokens,
            CalibrationSequences = sequences, Gradient = gradient, Fisher = fisher, SkippedBatches = skipped, CapturedGradients = captured,
            Activations = activations,
        };
    }

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
    }
}
