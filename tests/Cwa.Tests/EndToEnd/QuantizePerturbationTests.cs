using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>--perturb quantize through the whole run: controls, the k-sweep and the dense-and-sparse split.</summary>
public class QuantizePerturbationTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void QuantisationRunsWithControlsSweepAndTheDenseAndSparseSplit()
    {
        using var dir = new TempDir();
        var (code, stdout, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--max-samples", "6", "--max-length", "24", "--topk", "8",
            "--perturb", "quantize", "--quant-bits", "2", "--quant-group", "8", "--quantize-all-but-top",
            "--controls", "random_k,bottom_k", "--control-seeds", "2", "--k-sweep", "1,8", "--save-plots", "false");
        Assert.True(code == 0, err);
        Assert.Contains("quantise all but the top-k", stdout);

        using var p = JsonDocument.Parse(File.ReadAllText(dir.File("perturbation_results.json")));
        var root = p.RootElement;
        Assert.Equal("quantize", root.GetProperty("kind").GetString());
        Assert.Equal(2, root.GetProperty("quantization").GetProperty("bits").GetInt32());
        Assert.Equal(8, root.GetProperty("quantization").GetProperty("group_size").GetInt32());
        var split = root.GetProperty("split");
        long all = split.GetProperty("all").GetProperty("weights_touched").GetInt64();
        long rest = split.GetProperty("all_but_top").GetProperty("weights_touched").GetInt64();
        long kept = split.GetProperty("top_kept").GetInt64();
        Assert.Equal(all, rest + kept);
        Assert.True(kept > 0 && kept <= 8 * 16, $"kept {kept}");
        // The control keeps as many random weights per tensor.
        Assert.Equal(rest, split.GetProperty("all_but_random").GetProperty("weights_touched").GetInt64());

        using var m = JsonDocument.Parse(File.ReadAllText(dir.File("experiment_manifest.json")));
        var results = m.RootElement.GetProperty("results");
        double dAll = results.GetProperty("delta_ppl_quantize_all").GetDouble();
        double dRest = results.GetProperty("delta_ppl_quantize_all_but_top").GetDouble();
        // 2-bit quantisation of every weight moves the tiny random model's perplexity (either way: it has nothing to
        // lose); keeping the top-k exact must change that. The share is only defined when quantising did damage.
        Assert.NotEqual(0, dAll);
        Assert.NotEqual(dAll, dRest);
        Assert.Equal(dAll > 0, results.TryGetProperty("top_k_share_of_quantization_damage", out var share));
        if (dAll > 0) Assert.Equal((dAll - dRest) / dAll, share.GetDouble(), 9);
        Assert.True(results.TryGetProperty("delta_ppl_quantize_all_but_random_k", out _));
        Assert.Equal(2, root.GetProperty("controls").GetArrayLength());
        Assert.Contains("2-bit RTN grid, groups of 8", File.ReadAllText(dir.File("report.html")));
    }

    [Fact]
    public void TheSplitNeedsTheWholeModelInMemory()
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--streaming", "on", "--perturb", "quantize", "--quantize-all-but-top");
        Assert.Equal(2, code);
        Assert.Contains("--quantize-all-but-top perturbs every weight at once", err);
    }
}
