using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>A perturbation that makes the model diverge is a result, written as null with a reason everywhere.</summary>
public class NonFiniteResultsTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void DivergedRunsAreNullWithAReasonAndTheFlippedBitIsRecorded()
    {
        using var dir = new TempDir();
        var (code, stdout, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--max-samples", "6", "--max-length", "24", "--topk", "10",
            "--perturb", "bit_flip", "--controls", "random_k,bottom_k", "--control-seeds", "2", "--k-sweep", "1,10");
        Assert.True(code == 0, err);
        Assert.Contains("not finite: the perturbation made the model diverge", stdout);

        using var m = JsonDocument.Parse(File.ReadAllText(dir.File("experiment_manifest.json")));
        var results = m.RootElement.GetProperty("results");
        Assert.Equal(JsonValueKind.Null, results.GetProperty("delta_ppl_top_k").ValueKind);
        Assert.Contains(results.GetProperty("notes").EnumerateArray(), n => n.GetString() == "delta_ppl_top_k is null: the perturbation made the model diverge");

        using var p = JsonDocument.Parse(File.ReadAllText(dir.File("perturbation_results.json")));
        Assert.Equal(30, p.RootElement.GetProperty("bit").GetInt32()); // the fp32 top exponent bit, the default
        var top = p.RootElement.GetProperty("top_k_run");
        Assert.Equal(JsonValueKind.Null, top.GetProperty("delta_perplexity").ValueKind);
        Assert.StartsWith("the perturbation made the model diverge", top.GetProperty("note").GetString());
        Assert.Contains("the perturbation made the model diverge", File.ReadAllText(dir.File("report.html")));
    }

    [Fact]
    public void HugeNoiseWithControlsCompletesWithNullsAndReasons()
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--max-samples", "4", "--max-length", "16", "--topk", "5", "--quiet",
            "--perturb", "gauss_noise", "--perturb-scale", "1e30", "--absolute-noise", "--controls", "random_k", "--control-seeds", "3");
        Assert.True(code == 0, err);
        using var m = JsonDocument.Parse(File.ReadAllText(dir.File("experiment_manifest.json")));
        Assert.Equal(JsonValueKind.Null, m.RootElement.GetProperty("results").GetProperty("delta_ppl_random_k_mean").ValueKind);
        using var p = JsonDocument.Parse(File.ReadAllText(dir.File("perturbation_results.json")));
        Assert.StartsWith("3 of 3 draws: the perturbation made the model diverge", p.RootElement.GetProperty("controls")[0].GetProperty("note").GetString());
    }

    [Fact]
    public void OneDrawHasNoIntervalRatherThanAZeroWidthOne()
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--max-samples", "6", "--max-length", "24", "--topk", "5",
            "--perturb", "zero", "--controls", "random_k", "--control-seeds", "1", "--quiet");
        Assert.True(code == 0, err);
        using var p = JsonDocument.Parse(File.ReadAllText(dir.File("perturbation_results.json")));
        var control = p.RootElement.GetProperty("controls")[0];
        Assert.Equal(1, control.GetProperty("draws").GetInt32());
        Assert.Equal(JsonValueKind.Null, control.GetProperty("ci95_low").ValueKind);
        Assert.Equal(JsonValueKind.Null, control.GetProperty("ci95_high").ValueKind);
        Assert.Contains("one draw, no interval", File.ReadAllText(dir.File("report.html")));
        using var m = JsonDocument.Parse(File.ReadAllText(dir.File("experiment_manifest.json")));
        Assert.False(m.RootElement.GetProperty("results").TryGetProperty("top_minus_random_ci95_high_delta_ppl", out _));
    }
}
