using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>`cwa perturb`: a given weight list, jointly or one at a time, against the unperturbed model.</summary>
public class PerturbCommandTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static JsonElement Json(string path) => JsonDocument.Parse(File.ReadAllText(path)).RootElement;

    [Theory]
    [InlineData("zero", "off")]
    [InlineData("quantize", "off")]
    [InlineData("zero", "on")]
    public void ATopWeightsCsvRoundTripsToTheSameDamageAsTheAnalyzeRun(string kind, string streaming)
    {
        using var dir = new TempDir();
        string run = dir.File("run"), again = dir.File("again");
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", run, "--max-samples", "8", "--max-length", "32", "--topk", "6",
            "--perturb", kind, "--quant-bits", "2", "--quant-group", "16", "--save-plots", "false", "--quiet");
        Assert.True(code == 0, err);
        (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", Path.Combine(run, "top_weights.csv"), "--out-dir", again,
            "--perturb", kind, "--quant-bits", "2", "--quant-group", "16", "--max-length", "32", "--streaming", streaming, "--quiet");
        Assert.True(code == 0, err);

        var analyzed = Json(Path.Combine(run, "perturbation_results.json"));
        var perturbed = Json(Path.Combine(again, "perturbation_results.json"));
        Assert.Equal(analyzed.GetProperty("baseline").GetProperty("perplexity").GetDouble(), perturbed.GetProperty("baseline").GetProperty("perplexity").GetDouble());
        var top = analyzed.GetProperty("top_k_run");
        var entry = perturbed.GetProperty("entries").EnumerateArray().Single();
        Assert.Equal(top.GetProperty("weights_touched").GetInt64(), entry.GetProperty("weights_touched").GetInt64());
        Assert.Equal(top.GetProperty("delta_perplexity").GetDouble(), entry.GetProperty("delta_perplexity").GetDouble());
        Assert.Equal(kind, entry.GetProperty("method").GetString());

        var manifest = Json(Path.Combine(again, "experiment_manifest.json"));
        Assert.Equal(entry.GetProperty("delta_perplexity").GetDouble(), manifest.GetProperty("results").GetProperty("delta_ppl_targets").GetDouble());
        Assert.Equal("perturb", manifest.GetProperty("config").GetProperty("command").GetString());
        OutDirTests.AssertManifestDescribesTheFolder(again);
    }

    [Fact]
    public void EachTargetAloneWithLabelsValuesAndARandomControl()
    {
        using var dir = new TempDir();
        string targets = dir.File("known.csv"), outDir = dir.File("out");
        File.WriteAllText(targets, "tensor,layer,row,col,label,source\nmlp.down_proj,1,7,23,planted,test\nmlp.down_proj,0,3,100,,\n");
        var (code, stdout, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", targets, "--each", "--perturb", "sign_flip",
            "--control-seeds", "2", "--out-dir", outDir, "--max-length", "32");
        Assert.True(code == 0, err);
        Assert.Contains("each target alone", stdout);
        var entries = Json(Path.Combine(outDir, "perturbation_results.json")).GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(2, entries.Count);
        Assert.Equal("planted", entries[0].GetProperty("target").GetString());
        Assert.Equal("test", entries[0].GetProperty("source").GetString());
        Assert.Equal("model.layers.0.mlp.down_proj.weight[3, 100]", entries[1].GetProperty("target").GetString());
        foreach (var e in entries)
        {
            Assert.Equal(1, e.GetProperty("weights_touched").GetInt64());
            Assert.Equal(-e.GetProperty("weight").GetSingle(), e.GetProperty("perturbed_weight").GetSingle());
            Assert.Equal(2, e.GetProperty("random_k").GetProperty("draws").GetInt32());
        }
        var results = Json(Path.Combine(outDir, "experiment_manifest.json")).GetProperty("results");
        Assert.Equal(2, results.GetProperty("num_targets").GetInt32());
        Assert.Equal(entries.Max(e => e.GetProperty("delta_perplexity").GetDouble()), results.GetProperty("max_delta_ppl").GetDouble());
    }

    [Fact]
    public void BadTargetsFailBeforeAnythingIsWritten()
    {
        using var dir = new TempDir();
        string targets = dir.File("t.csv"), outDir = dir.File("out");
        File.WriteAllText(targets, "tensor,row,col\nlayers.0.mlp.down_proj,64,0\n");
        var (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", targets, "--out-dir", outDir);
        Assert.Equal(2, code);
        Assert.Equal($"error: {targets}:2: index (64, 0) is outside model.layers.0.mlp.down_proj.weight [64, 176]", err.Trim());
        Assert.False(Directory.Exists(outDir));

        (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--out-dir", outDir);
        Assert.Equal(2, code);
        Assert.Contains("--targets", err);
        (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", dir.File("none.csv"), "--out-dir", outDir);
        Assert.Equal(2, code);
        Assert.Contains("none.csv: targets file not found", err);
        (code, _, err) = Cli.Run("perturb", "--model", tiny.Model, "--targets", targets, "--perturb", "melt", "--out-dir", outDir);
        Assert.Equal(2, code);
        Assert.Contains("unknown perturbation 'melt'", err);
        Assert.False(Directory.Exists(outDir));
    }
}
