using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Reporting;
using Cwa.Core.Tokenization;

namespace Cwa.Tests.EndToEnd;

public class AnalyzeEndToEndTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static readonly string[] Common = ["--max-samples", "12", "--max-length", "48", "--batch-size", "4", "--topk", "20", "--quiet"];

    [Fact]
    public void WritesEveryFileWithTheDocumentedSchema()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run([ "analyze", "--model", tiny.Model, "--out-dir", outDir.Path, .. Common,
            "--perturb", "zero", "--controls", "random_k,bottom_k", "--control-seeds", "2", "--k-sweep", "1,5,20", "--seeds", "1,2", "--stability-check" ]);
        Assert.True(code == 0, err);

        using var config = JsonDocument.Parse(File.ReadAllText(outDir.File("config.json")));
        foreach (var key in new[] { "model", "device", "dtype", "metric", "topk", "mode", "perturb", "perturb_scale", "perturb_prob", "controls", "seeds", "stability_check", "data_file", "max_samples", "max_length", "out_dir", "save_plots" })
            Assert.True(config.RootElement.TryGetProperty(key, out _), $"config.json lacks {key}");
        Assert.Equal(20, config.RootElement.GetProperty("topk").GetInt32());

        using var stats = JsonDocument.Parse(File.ReadAllText(outDir.File("sensitivity_stats.json")));
        var specs = LlamaLayout.Parameters(CheckpointFolderConfig()).Where(s => s.Is2D).ToList();
        Assert.Equal(specs.Select(s => s.Name), stats.RootElement.EnumerateObject().Select(p => p.Name));
        foreach (var t in stats.RootElement.EnumerateObject())
            foreach (var key in new[] { "mean", "std", "min", "max", "p95", "p99", "num_weights", "p50", "p999", "num_zeros", "median", "q25", "q75", "skewness", "excess_kurtosis", "zero_share" })
                Assert.True(t.Value.TryGetProperty(key, out _), $"{t.Name} lacks {key}");

        Assert.Equal(TopWeightsCsv.Header, File.ReadLines(outDir.File("top_weights.csv")).First());
        var rows = TopWeightsCsv.Read(outDir.File("top_weights.csv"));
        Assert.Equal(specs.Count * 20, rows.Count);
        Assert.True(rows.Zip(rows.Skip(1)).All(p => p.First.Score >= p.Second.Score), "rows must be sorted by score descending");

        string prefix = "plots/grad_x_weight_k20";
        foreach (var f in new[] { "layer_comparison", "sensitivity_distribution", "sensitivity_heatmap", "perturbation_effects", "dose_response" })
        {
            Assert.True(new FileInfo(outDir.File($"{prefix}_{f}.png")).Length > 1000, f);
            Assert.True(File.Exists(outDir.File($"{prefix}_{f}.svg")), f);
        }
        using (var conc = JsonDocument.Parse(File.ReadAllText(outDir.File("sensitivity_concentration.json"))))
        {
            var tensors = conc.RootElement.GetProperty("tensors");
            Assert.Equal(specs.Select(s => s.Name), tensors.EnumerateObject().Select(p => p.Name));
            foreach (var t in tensors.EnumerateObject())
                Assert.True(t.Value.GetProperty("top_count").GetInt32() >= 1 && t.Value.GetProperty("top_columns_by_count").GetArrayLength() >= 1, t.Name);
        }
        foreach (var f in new[] { "perturbation_results.json", "control_baselines.json", "stability_summary.json", "report.html", "sensitivity_aggregates.json", "plots/stability_heatmap.png" })
            Assert.True(File.Exists(outDir.File(f)), f);

        // The report says when, where and from which commit, links the CSV, and tabulates the k-sweep and the paired differences.
        string report = File.ReadAllText(outDir.File("report.html"));
        foreach (var text in new[] { "<th>date</th>", "<th>device</th><td>cpu</td>", "<th>cwa commit</th>", "<a href=\"top_weights.csv\">top_weights.csv</a>",
                     "k-sweep, k = 5 (", "top_k − random_k, paired per text", "Jaccard at k, per_layer", "Sensitivity mass: share of the total score" })
            Assert.Contains(text, report);
        Assert.True(File.Exists(outDir.File("plots/stability_at_k.png")));
        using (var mass = JsonDocument.Parse(File.ReadAllText(outDir.File("sensitivity_mass.json"))))
            Assert.Equal(1.0, mass.RootElement.GetProperty("tensors").EnumerateArray().Sum(t => t.GetProperty("share").GetDouble()), 9);

        using var manifest = JsonDocument.Parse(File.ReadAllText(outDir.File("experiment_manifest.json")));
        var m = manifest.RootElement;
        foreach (var key in new[] { "experiment_name", "timestamp_start", "timestamp_end", "tool", "environment", "config", "model", "data", "seeds", "timing", "results", "output_files", "total_duration_seconds" })
            Assert.True(m.TryGetProperty(key, out _), $"manifest lacks {key}");
        var listed = m.GetProperty("output_files").EnumerateArray().Select(f => f.GetProperty("path").GetString()).ToHashSet();
        var actual = Directory.EnumerateFiles(outDir.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(outDir.Path, f)).Where(f => f != "experiment_manifest.json");
        Assert.All(actual, f => Assert.Contains(f, listed));
        Assert.True(m.GetProperty("results").GetProperty("forward_backward_tflops").GetDouble() > 0);
        Assert.Equal(JsonValueKind.Null, m.GetProperty("environment").GetProperty("gpu").ValueKind);
        Assert.Equal(Cwa.Core.Engine.MicroKernels.Best.ToString().ToLowerInvariant(), m.GetProperty("environment").GetProperty("sgemm_kernel").GetString());
        Assert.Equal(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(), m.GetProperty("environment").GetProperty("architecture").GetString());
        foreach (var phase in new[] { "load", "gradients", "scoring", "ranking", "writing", "plots", "perturbation" })
            Assert.True(m.GetProperty("timing").TryGetProperty(phase, out _), $"timing lacks {phase}");
        // Results are keyed for jq and pandas: snake_case ASCII, both losses named.
        foreach (var p in m.GetProperty("results").EnumerateObject())
            Assert.Matches("^[a-z0-9_]+$", p.Name);
        foreach (var key in new[] { "calibration_loss", "avg_loss", "top1_score", "baseline_perplexity", "delta_ppl_top_k", "delta_ppl_random_k_mean", "delta_ppl_bottom_k_mean", "mean_jaccard_across_seeds" })
            Assert.True(m.GetProperty("results").TryGetProperty(key, out _), $"results lack {key}");
        var data = m.GetProperty("data");
        Assert.Equal(data.GetProperty("num_target_tokens").GetInt64() + data.GetProperty("num_sequences").GetInt64(), data.GetProperty("num_tokens").GetInt64());
        Assert.Empty(Directory.EnumerateFiles(outDir.Path, "*.tmp-*", SearchOption.AllDirectories));

        using var pert = JsonDocument.Parse(File.ReadAllText(outDir.File("perturbation_results.json")));
        Assert.Equal(2, pert.RootElement.GetProperty("controls").EnumerateArray().Count());
        Assert.Equal(9, pert.RootElement.GetProperty("k_sweep").EnumerateArray().Count());
    }

    [Fact]
    public void TopWeightsAndStatsAgreeWithAnIndependentRecomputation()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run(["analyze", "--model", tiny.Model, "--out-dir", outDir.Path, "--save-plots", "false", .. Common]);
        Assert.True(code == 0, err);

        // Recompute G = sum over batches of the batch-mean-loss gradient in double, from the same seeded sample.
        using var ckpt = CheckpointFolder.Open(tiny.Model);
        var tok = TokenizerLoader.Load(tiny.Model, ckpt.Config);
        var seqs = CalibrationSet.Build(BuiltInCorpus.Calibration, tok, 48, 12, 42);
        var w = ModelWeights<double>.Load(ckpt.Config, ckpt);
        var g = w.ZerosLike();
        var net = new LlamaModel<double>(w);
        foreach (var b in CalibrationSet.MakeBatches(seqs, 4, tok.PadId)) net.ForwardBackward(b, g);

        var rows = TopWeightsCsv.Read(outDir.File("top_weights.csv"));
        using var stats = JsonDocument.Parse(File.ReadAllText(outDir.File("sensitivity_stats.json")));
        foreach (var name in new[] { "model.layers.1.mlp.down_proj.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight" })
        {
            int t = w.IndexOf(name);
            var scores = w[t].Zip(g[t], (a, b) => Math.Abs(a * b)).ToArray();
            int cols = w.Specs[t].Cols;
            var expected = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).Take(10).Select(i => (i / cols, i % cols)).ToList();
            var ours = rows.Where(r => r.Parameter == name).OrderByDescending(r => r.Score).Take(10).Select(r => (r.Row, r.Col)).ToList();
            // fp32 vs fp64 can swap near-ties, so compare the sets of the top 10.
            Assert.True(expected.Intersect(ours).Count() >= 9, $"{name}: expected {string.Join(" ", expected)} got {string.Join(" ", ours)}");
            var s = stats.RootElement.GetProperty(name);
            Assert.Equal(scores.Average(), s.GetProperty("mean").GetDouble(), scores.Average() * 1e-3);
            Assert.Equal(scores.Max(), s.GetProperty("max").GetDouble(), scores.Max() * 1e-3);
            Assert.Equal(scores.Length, s.GetProperty("num_weights").GetInt64());
        }
    }

    [Fact]
    public void TwoRunsWithTheSameArgumentsAreByteIdentical()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        string[] args = ["analyze", "--model", tiny.Model, "--save-plots", "false", "--mode", "global", .. Common];
        Assert.Equal(0, Cli.Run([.. args, "--out-dir", a.Path]).Code);
        Assert.Equal(0, Cli.Run([.. args, "--out-dir", b.Path]).Code);
        Assert.Equal(File.ReadAllBytes(a.File("top_weights.csv")), File.ReadAllBytes(b.File("top_weights.csv")));
        Assert.Equal(File.ReadAllBytes(a.File("sensitivity_stats.json")), File.ReadAllBytes(b.File("sensitivity_stats.json")));
        Assert.Equal(20, TopWeightsCsv.Read(a.File("top_weights.csv")).Count);
    }

    [Theory]
    [InlineData("magnitude")]
    [InlineData("grad_squared")]
    [InlineData("fisher")]
    [InlineData("obd")]
    [InlineData("wanda")]
    [InlineData("act_outlier")]
    [InlineData("hutchinson_diag")]
    public void EveryMetricRunsEndToEnd(string metric)
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run(["analyze", "--model", tiny.Model, "--out-dir", outDir.Path, "--metric", metric, "--save-plots", "false",
            "--hutchinson-probes", "1", "--mode", "per_block", .. Common]);
        Assert.True(code == 0, err);
        var rows = TopWeightsCsv.Read(outDir.File("top_weights.csv"));
        Assert.NotEmpty(rows);
        Assert.All(rows, r => Assert.True(float.IsFinite(r.Score) && r.Score >= 0));
        if (metric == "act_outlier")
        {
            using var sw = JsonDocument.Parse(File.ReadAllText(outDir.File("super_weights.json")));
            Assert.Equal(2, sw.RootElement.GetProperty("layers").GetArrayLength());
        }
    }

    private ModelConfig CheckpointFolderConfig()
    {
        using var c = CheckpointFolder.Open(tiny.Model);
        return c.Config;
    }

    [Fact]
    public void MetricsWithoutAGradientLeaveItsColumnEmptyAndTimeAForwardPhase()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run(["analyze", "--model", tiny.Model, "--out-dir", outDir.Path, .. Common, "--metric", "wanda", "--save-plots", "false"]);
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(outDir.File("top_weights.csv")).Skip(1).ToList();
        Assert.All(lines, l => Assert.EndsWith(",", l));
        Assert.All(TopWeightsCsv.Read(outDir.File("top_weights.csv")), r => Assert.True(float.IsNaN(r.Gradient)));
        using var m = JsonDocument.Parse(File.ReadAllText(outDir.File("experiment_manifest.json")));
        Assert.True(m.RootElement.GetProperty("timing").TryGetProperty("forward", out _));
        Assert.False(m.RootElement.GetProperty("timing").TryGetProperty("gradients", out _));
    }

    [Fact]
    public void MagnitudeReadsNoDataAndReportsNoLoss()
    {
        using var outDir = new TempDir();
        var (code, stdout, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", outDir.Path, "--metric", "magnitude", "--save-plots", "false", "--topk", "5");
        Assert.True(code == 0, err);
        Assert.Contains("none needed (|W| reads no data)", stdout);
        using var m = JsonDocument.Parse(File.ReadAllText(outDir.File("experiment_manifest.json")));
        Assert.False(m.RootElement.GetProperty("results").TryGetProperty("calibration_loss", out _));
        Assert.False(m.RootElement.GetProperty("results").TryGetProperty("notes", out _));
    }
}
