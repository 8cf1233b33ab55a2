using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>The built-in demo model: the README's main command works, and the ranking passes its causal test.</summary>
public class DemoModelTests
{
    [Fact]
    public void ZeroingTheTopKHurtsFarMoreThanRandomAndBottomControls()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--out-dir", outDir.Path, "--quiet", "--max-samples", "48", "--topk", "100",
            "--perturb", "zero", "--controls", "random_k,bottom_k", "--control-seeds", "3");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(File.ReadAllText(outDir.File("perturbation_results.json")));
        var p = doc.RootElement;
        double baseline = p.GetProperty("baseline").GetProperty("perplexity").GetDouble();
        double top = p.GetProperty("top_k_run").GetProperty("delta_perplexity").GetDouble();
        var controls = p.GetProperty("controls").EnumerateArray().ToDictionary(c => c.GetProperty("selection").GetString()!);
        double randomMean = controls["random_k"].GetProperty("mean_delta_perplexity").GetDouble();
        double randomHigh = controls["random_k"].GetProperty("ci95_high").GetDouble();
        double bottom = controls["bottom_k"].GetProperty("mean_delta_perplexity").GetDouble();

        // The demo model is a real (small) language model: far better than uniform over its 1024 tokens.
        Assert.InRange(baseline, 20, 400);
        // Measured on this model (48 calibration texts): top-k about +5 perplexity, random-k and bottom-k within ±0.3.
        double noise = Math.Max(0.05, Math.Max(Math.Abs(randomMean), Math.Abs(randomHigh)));
        Assert.True(top > 1.0, $"zeroing the top-k changed perplexity by only {top:G4}");
        Assert.True(top > 10 * noise, $"top-k Δppl {top:G4} is not far above random-k (mean {randomMean:G4}, 95% high {randomHigh:G4})");
        Assert.True(top > 10 * Math.Abs(bottom), $"top-k Δppl {top:G4} is not far above bottom-k {bottom:G4}");
    }
}
