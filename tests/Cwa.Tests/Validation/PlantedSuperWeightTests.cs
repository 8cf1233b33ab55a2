using System.Text.Json;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Validation;

/// <summary>
/// Planted ground truth: a generated model (and a variant of the trained demo) with one down_proj weight the model
/// cannot live without. Each detector must find it, and removing it must hurt far more than removing a random weight.
/// </summary>
public class PlantedSuperWeightTests
{
    private static JsonElement Json(string path) => JsonDocument.Parse(File.ReadAllText(path)).RootElement;

    [Fact]
    public void ActOutlierAndGradXWeightFindThePlantedWeightInAGeneratedModel()
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--seed", "3", "--plant-super-weight", "1,7,100", "--out", dir.File("m"), "--quiet");
        Assert.True(code == 0, err);
        File.WriteAllText(dir.File("known.csv"), "tensor,row,col,label\nlayers.1.mlp.down_proj,7,100,planted\n");
        string[] common = ["analyze", "--model", dir.File("m"), "--quiet", "--save-plots", "false", "--max-samples", "16", "--max-length", "64", "--topk", "5"];

        (code, _, err) = EndToEnd.Cli.Run([.. common, "--metric", "act_outlier", "--out-dir", dir.File("ao")]);
        Assert.True(code == 0, err);
        var layers = Json(Path.Combine(dir.File("ao"), "super_weights.json")).GetProperty("layers").EnumerateArray().ToList();
        var layer1 = layers.Single(l => l.GetProperty("layer").GetInt32() == 1);
        Assert.Equal((7, 100), (layer1.GetProperty("row").GetInt32(), layer1.GetProperty("col").GetInt32()));
        Assert.True(layer1.GetProperty("max_abs_output").GetDouble() > 100 * layers.Where(l => l.GetProperty("layer").GetInt32() != 1).Max(l => l.GetProperty("max_abs_output").GetDouble()));

        (code, _, err) = EndToEnd.Cli.Run([.. common, "--out-dir", dir.File("g"), "--known-weights", dir.File("known.csv")]);
        Assert.True(code == 0, err);
        var known = Json(Path.Combine(dir.File("g"), "known_weights.json"));
        Assert.Equal(1, known.GetProperty("weights")[0].GetProperty("rank_in_tensor").GetInt64());
        Assert.Equal(1.0, known.GetProperty("recall_global").GetDouble());
    }

    [Fact]
    public void RemovingThePlantedWeightFromTheTrainedVariantHurtsFarMoreThanARandomWeight()
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--from-demo", "--plant-super-weight", "1,37,400", "--out", dir.File("m"), "--quiet");
        Assert.True(code == 0, err);
        File.WriteAllLines(dir.File("eval.txt"), Cwa.Core.Data.BuiltInCorpus.Evaluation.Take(16));
        (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", dir.File("m"), "--quiet", "--save-plots", "false", "--max-samples", "16", "--max-length", "64",
            "--metric", "act_outlier", "--out-dir", dir.File("ao"));
        Assert.True(code == 0, err);
        var spikes = Json(Path.Combine(dir.File("ao"), "super_weights.json")).GetProperty("layers").EnumerateArray().Where(l => l.GetProperty("is_spike").GetBoolean()).ToList();
        Assert.Equal((1, 37, 400), (spikes.Single().GetProperty("layer").GetInt32(), spikes.Single().GetProperty("row").GetInt32(), spikes.Single().GetProperty("col").GetInt32()));

        File.WriteAllText(dir.File("planted.csv"), "tensor,row,col\nlayers.1.mlp.down_proj,37,400\n");
        (code, _, err) = EndToEnd.Cli.Run("perturb", "--model", dir.File("m"), "--targets", dir.File("planted.csv"), "--data-file", dir.File("eval.txt"),
            "--control-seeds", "5", "--out-dir", dir.File("p"), "--quiet");
        Assert.True(code == 0, err);
        var entry = Json(Path.Combine(dir.File("p"), "perturbation_results.json")).GetProperty("entries")[0];
        double planted = entry.GetProperty("delta_perplexity").GetDouble();
        var random = entry.GetProperty("random_k").GetProperty("runs").EnumerateArray().Select(r => Math.Abs(r.GetProperty("delta_perplexity").GetDouble())).ToList();
        Assert.True(planted > 50 && planted > 1000 * random.Max(), $"planted Δppl {planted}, random single weights up to {random.Max()}");
    }

    [Theory]
    [InlineData("1,7", "--plant-super-weight expects LAYER,ROW,COL (got '1,7')")]
    [InlineData("2,7,100", "--plant-super-weight: layer 2 is outside 0..1")]
    [InlineData("1,64,100", "--plant-super-weight: row 64 is outside the hidden size 0..63")]
    [InlineData("1,7,176", "--plant-super-weight: col 176 is outside the intermediate size 0..175")]
    public void BadPlantsAreInputErrors(string spec, string message)
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--plant-super-weight", spec, "--out", dir.File("m"), "--quiet");
        Assert.Equal(2, code);
        Assert.Contains(message, err);
    }
}
