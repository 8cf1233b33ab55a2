using System.Text.Json;
using Cwa.Core.Checkpoints;

namespace Cwa.Tests.EndToEnd;

/// <summary>The model-wide score quantiles in the manifest against every dumped score, in memory (exact) and streamed (one radix bucket).</summary>
public class OverallQuantilesTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Theory]
    [InlineData("off", "exact")]
    [InlineData("on", "radix_bucket_midpoint_within_0.4pct")]
    public void ManifestQuantilesMatchTheDumpedScores(string streaming, string method)
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--device", "cpu", "--streaming", streaming, "--out-dir", dir.Path, "--max-samples", "6",
            "--max-length", "24", "--batch-size", "3", "--topk", "5", "--save-plots", "false", "--include-1d", "true", "--dump-scores", "--quiet");
        Assert.True(code == 0, err);
        using var f = SafeTensorsFile.Open(dir.File("scores.safetensors"));
        var all = new List<float>();
        foreach (var name in f.Names)
        {
            var v = new float[f.Info(name).ElementCount];
            f.Read(name, v);
            all.AddRange(v);
        }
        var sorted = all.Where(v => !float.IsNaN(v)).Order().ToArray();
        using var m = JsonDocument.Parse(File.ReadAllText(dir.File("experiment_manifest.json")));
        var q = m.RootElement.GetProperty("results").GetProperty("overall_score_quantiles");
        Assert.Equal(method, q.GetProperty("method").GetString());
        foreach (var (key, p) in new[] { ("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999) })
        {
            double expected = sorted[(int)Math.Ceiling(p * sorted.Length) - 1], got = q.GetProperty(key).GetDouble();
            if (method == "exact") Assert.Equal(expected, got);
            else Assert.True(Math.Abs(got - expected) <= Math.Abs(expected) / 256, $"{key}: {got} vs {expected}");
        }
    }
}
