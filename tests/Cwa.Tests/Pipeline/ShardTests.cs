using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Pipeline;
using Cwa.Core.Reporting;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

/// <summary>A run split into shards (as array jobs would), merged, against the same run in one process.</summary>
public class ShardTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private string[] Args(string outDir, params string[] extra) =>
        ["analyze", "--model", tiny.Model, "--device", "cpu", "--out-dir", outDir, "--max-samples", "24", "--max-length", "32", "--batch-size", "2",
            "--topk", "10", "--save-plots", "false", "--quiet", .. extra];

    private static void Ok((int Code, string Out, string Err) r) => Assert.True(r.Code == 0, r.Err);

    [Theory]
    [InlineData("grad_x_weight", 3, "cpu", "off")]
    [InlineData("fisher", 2, "cpu", "off")]
    // Each shard streams (partial sums written tensor by tensor as the layer-major pass completes them); so does the merge.
    [InlineData("grad_x_weight", 3, "cpu", "on")]
    [InlineData("fisher", 2, "cpu", "on")]
    // One device per shard: the device path on ILGPU's CPU accelerator, in memory and streamed.
    [InlineData("grad_x_weight", 2, "ilgpu-cpu", "off")]
    [InlineData("fisher", 2, "ilgpu-cpu", "on")]
    // Activation statistics: sums of squares add, maxima and down_proj peaks take the larger.
    [InlineData("wanda", 3, "cpu", "off")]
    [InlineData("act_outlier", 2, "cpu", "on")]
    [InlineData("act_outlier", 2, "ilgpu-cpu", "off")]
    // The built-in trained demo model (no --model), in memory and streamed.
    [InlineData("grad_x_weight", 2, "cpu", "off", "demo")]
    [InlineData("fisher", 3, "cpu", "on", "demo")]
    public void MergedShardsEqualTheSingleRun(string metric, int n, string device, string streaming, string model = "tiny")
    {
        using var dir = new TempDir();
        // The single run is the in-memory run on the same device (streamed equals it; tested elsewhere).
        string[] Run(string outDir, params string[] extra)
        {
            // ILGPU's CPU accelerator emulates every GPU thread: fewer texts and no held-out evaluation there.
            var args = Args(outDir, ["--metric", metric, .. device == "cpu" ? ["--perturb", "zero"] : Array.Empty<string>(), .. extra]);
            args[Array.IndexOf(args, "--device") + 1] = device;
            if (device != "cpu") args[Array.IndexOf(args, "--max-samples") + 1] = "6";
            return model == "demo" ? [.. args.Where((a, i) => a != "--model" && (i == 0 || args[i - 1] != "--model"))] : args;
        }
        Ok(EndToEnd.Cli.Run(Run(dir.File("single"), "--streaming", "off")));
        var files = new List<string>();
        for (int i = n; i >= 1; i--)
        {
            Ok(EndToEnd.Cli.Run(Run(dir.File($"s{i}"), "--shard", $"{i}/{n}", "--streaming", streaming)));
            files.Add(Path.Combine(dir.File($"s{i}"), new ShardSpec(i, n).FileName));
            Assert.Equal([new ShardSpec(i, n).FileName], Directory.EnumerateFiles(dir.File($"s{i}")).Select(Path.GetFileName));
        }
        Ok(EndToEnd.Cli.Run(["merge", .. files, "--out-dir", dir.File("merged"), "--quiet"]));

        var single = TopWeightsCsv.Read(Path.Combine(dir.File("single"), "top_weights.csv"));
        var merged = TopWeightsCsv.Read(Path.Combine(dir.File("merged"), "top_weights.csv"));
        Assert.Equal(single.Select(w => (w.Parameter, w.Row, w.Col)).ToHashSet(), merged.Select(w => (w.Parameter, w.Row, w.Col)).ToHashSet());
        foreach (var (a, b) in single.OrderBy(w => (w.Parameter, w.Row, w.Col)).Zip(merged.OrderBy(w => (w.Parameter, w.Row, w.Col))))
            Assert.True(Math.Abs(a.Score - b.Score) <= 1e-6 * Math.Abs(a.Score), $"{a.Parameter} {a.Indices}: {a.Score} vs {b.Score}");
        using var sa = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("single"), "sensitivity_stats.json")));
        using var sb = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("merged"), "sensitivity_stats.json")));
        foreach (var t in sa.RootElement.EnumerateObject())
        {
            double x = t.Value.GetProperty("mean").GetDouble(), y = sb.RootElement.GetProperty(t.Name).GetProperty("mean").GetDouble();
            Assert.True(Math.Abs(x - y) <= 1e-6 * Math.Abs(x), $"{t.Name}: mean {x} vs {y}");
        }
        using var ma = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("single"), "experiment_manifest.json")));
        using var mb = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("merged"), "experiment_manifest.json")));
        Assert.Equal(ma.RootElement.GetProperty("results").GetProperty("calibration_loss").GetDouble(), mb.RootElement.GetProperty("results").GetProperty("calibration_loss").GetDouble(), 12);
        Assert.Equal(ma.RootElement.GetProperty("data").GetProperty("num_target_tokens").GetInt64(), mb.RootElement.GetProperty("data").GetProperty("num_target_tokens").GetInt64());
        if (device == "cpu")
            Assert.Equal(ma.RootElement.GetProperty("results").GetProperty("baseline_perplexity").GetDouble(), mb.RootElement.GetProperty("results").GetProperty("baseline_perplexity").GetDouble());
        if (metric == "act_outlier")
            Assert.Equal(File.ReadAllText(Path.Combine(dir.File("single"), "super_weights.json")), File.ReadAllText(Path.Combine(dir.File("merged"), "super_weights.json")));
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("merged"), "config.json")));
        Assert.Equal(device, config.RootElement.GetProperty("device").GetString());
    }

    private static byte[] Replace(byte[] bytes, string from, string to)
    {
        var text = System.Text.Encoding.Latin1.GetString(bytes);
        Assert.Contains(from, text);
        return System.Text.Encoding.Latin1.GetBytes(text.Replace(from, to));
    }

    [Fact]
    public void MissingDuplicateAndForeignShardsAreRefusedByName()
    {
        using var dir = new TempDir();
        string Shard(int i, int n, params string[] extra)
        {
            Ok(EndToEnd.Cli.Run(Args(dir.File($"s{i}{string.Join("", extra)}"), ["--shard", $"{i}/{n}", .. extra])));
            return Path.Combine(dir.File($"s{i}{string.Join("", extra)}"), new ShardSpec(i, n).FileName);
        }
        string a = Shard(1, 2), b = Shard(2, 2), other = Shard(2, 2, "--seeds", "7");
        var (code, _, err) = EndToEnd.Cli.Run("merge", a, "--out-dir", dir.File("m1"));
        Assert.Equal(2, code);
        Assert.Contains("shard 2 of 2 is missing", err);
        (code, _, err) = EndToEnd.Cli.Run("merge", a, b, b, "--out-dir", dir.File("m2"));
        Assert.Equal(2, code);
        Assert.Contains("shard 2 of 2 is given twice", err);
        (code, _, err) = EndToEnd.Cli.Run("merge", a, other, "--out-dir", dir.File("m3"));
        Assert.Equal(2, code);
        Assert.Contains("this shard was computed for another run", err);
        (code, _, err) = EndToEnd.Cli.Run("merge", dir.File("none.safetensors"), "--out-dir", dir.File("m4"));
        Assert.Equal(2, code);
        Assert.Contains("shard file not found", err);
        // An index outside 1..N, and a changed byte, name the file and say what to do.
        string zero = dir.File("zero.safetensors"), flipped = dir.File("flipped.safetensors");
        var bytes = File.ReadAllBytes(a);
        File.WriteAllBytes(zero, Replace(bytes, "\"shard_index\":\"1\"", "\"shard_index\":\"0\""));
        (code, _, err) = EndToEnd.Cli.Run("merge", zero, b, "--out-dir", dir.File("m5"));
        Assert.Equal(2, code);
        Assert.Contains("zero.safetensors: not a valid cwa shard file (shard 0 of 2)", err);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(flipped, bytes);
        (code, _, err) = EndToEnd.Cli.Run("merge", flipped, b, "--out-dir", dir.File("m6"));
        Assert.Equal(2, code);
        Assert.Contains("flipped.safetensors: the shard file is damaged (checksum mismatch", err);
        Assert.Contains("compute this shard again", err);
        Assert.False(Directory.Exists(dir.File("m1")) || Directory.Exists(dir.File("m2")) || Directory.Exists(dir.File("m3")));
    }

    [Theory]
    [InlineData("--shard 3/2", "--shard: shard 3 of 2 is not in 1..2")]
    [InlineData("--shard two", "--shard expects I/N (e.g. 2/8) or auto")]
    [InlineData("--shard 1/2 --metric magnitude", "--metric magnitude needs no calibration data")]
    [InlineData("--shard 1/2 --metric hutchinson_diag", "--metric hutchinson_diag is not split into shards")]
    [InlineData("--shard 1/2 --grad-reduction mean", "needs --grad-reduction sum")]
    [InlineData("--shard 30/30", "there are only 12 calibration batches, so this shard has none")]
    public void UnsupportedShardsAreInputErrors(string extra, string message)
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run(Args(dir.File("o"), extra.Split(' ')));
        Assert.Equal(2, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void AutoReadsSlurmAndKubernetesIndices()
    {
        Dictionary<string, string?> env = new() { ["SLURM_ARRAY_TASK_ID"] = "5", ["SLURM_ARRAY_TASK_MIN"] = "4", ["SLURM_ARRAY_TASK_COUNT"] = "8" };
        Assert.Equal(new ShardSpec(2, 8), ShardSpec.Parse("auto", k => env.GetValueOrDefault(k)));
        env = new() { ["JOB_COMPLETION_INDEX"] = "0", ["CWA_SHARD_COUNT"] = "4" };
        Assert.Equal(new ShardSpec(1, 4), ShardSpec.Parse("auto", k => env.GetValueOrDefault(k)));
        Assert.Equal(new ShardSpec(1, 6), ShardSpec.Parse("auto", k => env.GetValueOrDefault(k), 6));
        env = new() { ["JOB_COMPLETION_INDEX"] = "3" };
        Assert.Contains("pass --shard-count", Assert.Throws<InputException>(() => ShardSpec.Parse("auto", k => env.GetValueOrDefault(k))).Message);
        Assert.Contains("neither SLURM_ARRAY_TASK_ID", Assert.Throws<InputException>(() => ShardSpec.Parse("auto", _ => null)).Message);
        env = new() { ["JOB_COMPLETION_INDEX"] = "4", ["CWA_SHARD_COUNT"] = "4" };
        Assert.Contains("shard 5 of 4", Assert.Throws<InputException>(() => ShardSpec.Parse("auto", k => env.GetValueOrDefault(k))).Message);
        Assert.Equal([1, 4, 7], new ShardSpec(2, 3).Batches(9));
    }
}
