using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>--ablate-each N against the two other ways of measuring the same sets: the top-k run and `cwa perturb --each`.</summary>
public class AblationTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void SingleAndJointEffectsMatchTheTopKRunAndPerturbEach()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var (code, stdout, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", run, "--max-samples", "8", "--max-length", "32",
            "--mode", "global", "--topk", "4", "--perturb", "sign_flip", "--ablate-each", "4");
        Assert.True(code == 0, err);
        Assert.Contains("--ablate-each 4: 9 evaluations of the held-out texts", stdout);
        using var ablation = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "ablation.json")));
        var weights = ablation.RootElement.GetProperty("weights").EnumerateArray().ToList();
        Assert.Equal(4, weights.Count);
        double D(JsonElement e, string name) => e.GetProperty(name).GetDouble();
        Assert.Equal(D(weights[0], "delta_perplexity_alone"), D(weights[0], "delta_perplexity_joint"));
        Assert.Equal(weights.Sum(w => D(w, "delta_perplexity_alone")), D(weights[3], "sum_of_individual"), 12);
        Assert.Equal(D(weights[3], "delta_perplexity_joint") - D(weights[3], "sum_of_individual"), D(weights[3], "interaction"), 12);

        // The top-4 jointly is the run's global top-4 set: the same Δ as the top-k perturbation.
        using var pert = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "perturbation_results.json")));
        Assert.Equal(pert.RootElement.GetProperty("top_k_run").GetProperty("delta_perplexity").GetDouble(), D(weights[3], "delta_perplexity_joint"));
        // Each alone is what `cwa perturb --each` measures on the run's top_weights.csv, in rank order.
        (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", Path.Combine(run, "top_weights.csv"), "--each", "--perturb", "sign_flip",
            "--out-dir", dir.File("each"), "--max-length", "32", "--quiet");
        Assert.True(code == 0, err);
        using var each = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("each"), "perturbation_results.json")));
        Assert.Equal(weights.Select(w => D(w, "delta_perplexity_alone")), each.RootElement.GetProperty("entries").EnumerateArray().Select(e => D(e, "delta_perplexity")));
        Assert.True(File.Exists(Path.Combine(run, "plots", "grad_x_weight_k4_ablation.png")));
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "experiment_manifest.json")));
        Assert.Equal(D(weights[0], "delta_perplexity_alone"), m.RootElement.GetProperty("results").GetProperty("ablation_top1_delta_ppl").GetDouble());
    }

    [Fact]
    public void ANegativeOrOversizedCountIsRefused()
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("o"), "--ablate-each", "-1");
        Assert.Equal(2, code);
        Assert.Contains("--ablate-each must be 0 or more", err);
        (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("o"), "--ablate-each", "100000000");
        Assert.Equal(2, code);
        Assert.Contains("--ablate-each 100000000 is larger than the largest scored tensor", err);
    }
}
