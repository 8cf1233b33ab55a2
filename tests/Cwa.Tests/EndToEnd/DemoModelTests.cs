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

    /// <summary>Issue 12 on the demo: known weights, the magnitude-matched control's paired interval, single-weight ablation and stability@k in one run.</summary>
    [Fact]
    public void KnownWeightsPairedControlsAblationAndStabilityWorkOnTheDemo()
    {
        using var dir = new TempDir();
        // The BOS embedding row carries the embedding's top scores (README); the down_proj weight is an arbitrary one.
        File.WriteAllText(dir.File("known.csv"), "tensor,row,col,label\nmodel.embed_tokens.weight,1021,46,bos\nlayers.1.mlp.down_proj,3,100,arbitrary\n");
        string run = dir.File("run");
        var (code, _, err) = Cli.Run("analyze", "--out-dir", run, "--quiet", "--max-samples", "24", "--topk", "20", "--save-plots", "false",
            "--known-weights", dir.File("known.csv"), "--perturb", "zero", "--controls", "random_k_matched", "--control-seeds", "2", "--ablate-each", "3",
            "--seeds", "1,2", "--stability-check");
        Assert.True(code == 0, err);
        JsonElement Read(string file) => JsonDocument.Parse(File.ReadAllText(Path.Combine(run, file))).RootElement;

        var known = Read("known_weights.json");
        var ranks = known.GetProperty("weights").EnumerateArray().Select(w => w.GetProperty("rank_in_tensor").GetInt64()).ToList();
        Assert.InRange(ranks[0], 1, 20);
        Assert.True(ranks[1] > 20, $"the arbitrary weight ranks {ranks[1]}");
        Assert.Equal(0.5, known.GetProperty("recall_per_layer").GetDouble());

        var matched = Read("perturbation_results.json").GetProperty("controls").EnumerateArray().Single();
        Assert.Equal("random_k_matched", matched.GetProperty("selection").GetString());
        var paired = matched.GetProperty("paired");
        Assert.True(paired.GetProperty("units").GetInt32() > 10);
        Assert.InRange(paired.GetProperty("mean_nll_difference").GetDouble(), paired.GetProperty("ci95_low").GetDouble(), paired.GetProperty("ci95_high").GetDouble());

        var ablation = Read("ablation.json");
        var weights = ablation.GetProperty("weights").EnumerateArray().ToList();
        Assert.Equal(3, weights.Count);
        Assert.Equal(weights[0].GetProperty("delta_perplexity_alone").GetDouble(), weights[0].GetProperty("delta_perplexity_joint").GetDouble());
        foreach (var w in weights)
            Assert.Equal(w.GetProperty("delta_perplexity_joint").GetDouble() - w.GetProperty("sum_of_individual").GetDouble(), w.GetProperty("interaction").GetDouble(), 9);

        var atK = Read("stability_summary.json").GetProperty("jaccard_at_k").EnumerateArray().ToList();
        Assert.Contains(atK, e => e.GetProperty("mode").GetString() == "per_layer" && e.GetProperty("k").GetInt32() == 20);
        Assert.All(atK, e => Assert.InRange(e.GetProperty("mean_jaccard_across_seeds").GetDouble(), 0, 1));
        Assert.All(atK, e => Assert.InRange(e.GetProperty("jaccard_halves").GetDouble(), 0, 1));
    }

    /// <summary>Issue 17 on the demo: quantisation, the targets round trip and the shape statistics.</summary>
    [Fact]
    public void QuantisingTheDemosTopWeightsRoundTripsThroughPerturbAndItsStatsHaveShape()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        // All 128 calibration texts, as README's numbers: with fewer the top row is a different token (the ranking is sample-dependent).
        var (code, _, err) = Cli.Run("analyze", "--out-dir", run, "--quiet", "--topk", "20", "--save-plots", "false",
            "--perturb", "quantize", "--quant-bits", "3");
        Assert.True(code == 0, err);
        (code, _, err) = Cli.Run("perturb", "--targets", Path.Combine(run, "top_weights.csv"), "--perturb", "quantize", "--quant-bits", "3",
            "--out-dir", dir.File("again"), "--quiet");
        Assert.True(code == 0, err);
        using var a = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "perturbation_results.json")));
        using var b = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("again"), "perturbation_results.json")));
        double analyzed = a.RootElement.GetProperty("top_k_run").GetProperty("delta_perplexity").GetDouble();
        Assert.NotEqual(0, analyzed);
        Assert.Equal(analyzed, b.RootElement.GetProperty("entries")[0].GetProperty("delta_perplexity").GetDouble());

        using var stats = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "sensitivity_stats.json")));
        var embed = stats.RootElement.GetProperty("model.embed_tokens.weight");
        Assert.True(embed.GetProperty("skewness").GetDouble() > 1 && embed.GetProperty("excess_kurtosis").GetDouble() > 1);
        using var conc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "sensitivity_concentration.json")));
        // The BOS row (1021) holds the largest share of the embedding's top scores, as README reports.
        Assert.Equal(1021, conc.RootElement.GetProperty("tensors").GetProperty("model.embed_tokens.weight").GetProperty("top_rows_by_count")[0].GetProperty("index").GetInt32());
    }

    /// <summary>Issue 13 on the demo: a hand-made task file with known answers through `cwa eval`, and every export format from a demo run.</summary>
    [Fact]
    public void TasksWithKnownAnswersAndEveryExportWorkOnTheDemo()
    {
        using var dir = new TempDir();
        // The demo learned the calibration corpus: its sentences continue with their own second halves, not letter soup.
        var lines = Cwa.Core.Data.BuiltInCorpus.Calibration.Take(10).Select(t => t.Split(". ")[0].Split(' ')).Where(w => w.Length >= 8).Take(6)
            .Select(w => JsonSerializer.Serialize(new { context = string.Join(' ', w[..(w.Length / 2)]), choices = new[] { " " + string.Join(' ', w[(w.Length / 2)..]), " qzx vvkj wqp xzzq jjw" }, label = 0 }));
        File.WriteAllLines(dir.File("known.jsonl"), lines);
        var (code, stdout, err) = Cli.Run("eval", "--device", "cpu", "--tasks", dir.File("known.jsonl"));
        Assert.True(code == 0, err);
        Assert.Contains("task known (multiple choice, 6 items): acc 1.0000  acc_norm 1.0000", stdout);

        string run = dir.File("run");
        (code, _, err) = Cli.Run("analyze", "--out-dir", run, "--quiet", "--max-samples", "16", "--topk", "20", "--save-plots", "false");
        Assert.True(code == 0, err);
        foreach (var format in Cwa.Core.Export.RunExport.Formats)
        {
            (code, _, err) = Cli.Run("export", run, "--format", format, "--out", dir.File(format), "--quiet");
            Assert.True(code == 0, err);
            Assert.True(new FileInfo(dir.File(format)).Length > 0, format);
        }
        Assert.All(File.ReadAllLines(dir.File("llama-cpp")), l => Assert.Matches(@"^\^(token_embd|output|blk\\\.\d+\\\.[a-z_]+)\\\.weight\$=q8_0$", l));
    }
}
