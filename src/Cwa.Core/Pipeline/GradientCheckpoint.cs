using System.Globalization;
using Cwa.Core.Checkpoints;

namespace Cwa.Core.Pipeline;

/// <summary>Where a gradient pass stands: the running sums after NextBatch batches.</summary>
public sealed record GradientState(int NextBatch, double LossSum, long Tokens, IReadOnlyList<string> Skipped, float[]?[] Gradient, float[]?[]? Fisher);

/// <summary>
/// Saves the running gradient (and Fisher) sums every few batches so an interrupted run can continue with
/// --resume. Everything, the position included, lives in one safetensors file written atomically, so a crash
/// during a save leaves the previous checkpoint intact. A run key (model, data and every argument that changes
/// the sums) guards against resuming a different run.
/// </summary>
public sealed class GradientCheckpoint(string path, string runKey, int every)
{
    public string Path { get; } = path;
    public int Every { get; } = every;

    public void Save(GradientState s)
    {
        var layout = new List<(string, DType, long[])>();
        for (int t = 0; t < s.Gradient.Length; t++)
        {
            if (s.Gradient[t] is { } g) layout.Add(($"g.{t}", DType.F32, [g.Length]));
            if (s.Fisher?[t] is { } f) layout.Add(($"f.{t}", DType.F32, [f.Length]));
        }
        var meta = new Dictionary<string, string>
        {
            ["run_key"] = runKey,
            ["next_batch"] = s.NextBatch.ToString(CultureInfo.InvariantCulture),
            ["loss_sum"] = s.LossSum.ToString("R", CultureInfo.InvariantCulture),
            ["tokens"] = s.Tokens.ToString(CultureInfo.InvariantCulture),
            ["tensors"] = s.Gradient.Length.ToString(CultureInfo.InvariantCulture),
            ["skipped"] = string.Join('\u001f', s.Skipped),
        };
        using var w = new SafeTensorsWriter(Path, layout, meta);
        for (int t = 0; t < s.Gradient.Length; t++)
        {
            if (s.Gradient[t] is { } g) w.Write($"g.{t}", g);
            if (s.Fisher?[t] is { } f) w.Write($"f.{t}", f);
        }
        w.Commit();
    }

    /// <summary>The saved state, or null when there is none; a checkpoint of another run is an input error.</summary>
    public GradientState? Load(bool withFisher)
    {
        if (!File.Exists(Path)) return null;
        using var f = SafeTensorsFile.Open(Path);
        if (!f.Metadata.TryGetValue("run_key", out var key) || key != runKey)
            throw new InputException($"{Path}: checkpoint belongs to a different run (model, data or arguments changed); delete it or drop --resume");
        int tensors = int.Parse(f.Metadata["tensors"], CultureInfo.InvariantCulture);
        var g = new float[]?[tensors];
        var fi = withFisher ? new float[]?[tensors] : null;
        for (int t = 0; t < tensors; t++)
        {
            if (f.Contains($"g.{t}")) f.Read($"g.{t}", g[t] = new float[f.Info($"g.{t}").ElementCount]);
            if (fi != null && f.Contains($"f.{t}")) f.Read($"f.{t}", fi[t] = new float[f.Info($"f.{t}").ElementCount]);
        }
        string skipped = f.Metadata["skipped"];
        return new GradientState(int.Parse(f.Metadata["next_batch"], CultureInfo.InvariantCulture), double.Parse(f.Metadata["loss_sum"], CultureInfo.InvariantCulture),
            long.Parse(f.Metadata["tokens"], CultureInfo.InvariantCulture), skipped.Length == 0 ? [] : skipped.Split('\u001f'), g, fi);
    }

    public void Delete()
    {
        if (File.Exists(Path)) File.Delete(Path);
    }
}
