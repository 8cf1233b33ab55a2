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
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--seed", "3", "--plant-super-weight", "0,7,100", "--out", dir.File("m"), "--quiet");
        Assert.True(code == 0, err);
        File.WriteAllText(dir.File("known.csv"), "tensor,row,col,label\nlayers.0.mlp.down_proj,7,100,planted\n");
        // Every weight on the planted path (marker embedding, gate, up, the weight, the sink's value and o_proj) is a factor
        // of one product, so they share one grad x weight: the global top-10 holds the whole path.
        string[] common = ["analyze", "--model", dir.File("m"), "--quiet", "--save-plots", "false", "--max-samples", "16", "--max-length", "64", "--topk", "10"];

        (code, _, err) = EndToEnd.Cli.Run([.. common, "--metric", "act_outlier", "--out-dir", dir.File("ao")]);
        Assert.True(code == 0, err);
        var layers = Json(Path.Combine(dir.File("ao"), "super_weights.json")).GetProperty("layers").EnumerateArray().ToList();
        var planted = layers.Single(l => l.GetProperty("layer").GetInt32() == 0);
        Assert.Equal((7, 100), (planted.GetProperty("row").GetInt32(), planted.GetProperty("col").GetInt32()));
        Assert.True(planted.GetProperty("max_abs_output").GetDouble() > 100 * layers.Where(l => l.GetProperty("layer").GetInt32() != 0).Max(l => l.GetProperty("max_abs_output").GetDouble()));

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

    [Fact]
    public void TheMassiveActivationIsOnBosAloneAndTheNextLayerCarriesItToEveryToken()
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--seed", "5", "--plant-super-weight", "0,7,100", "--out", dir.File("m"), "--quiet");
        Assert.True(code == 0, err);
        using var model = Cwa.Core.Pipeline.LoadedModel.Open(dir.File("m"), "f32", "cpu", new Cwa.Core.Engine.EngineOptions(), new Cwa.Core.Pipeline.NullProgress());
        int bos = model.Config.BosTokenId!.Value, h = model.Config.HiddenSize;
        var seen = new Activations();
        model.Backend.Observer = seen;
        int[] tokens = [bos, 40, 41, 300, 7, 99, 250, 12];
        var batch = new Cwa.Core.Data.Batch(1, tokens.Length, tokens, [tokens.Length]);
        model.Backend.ForwardLoss(batch);
        // Layer 0's down_proj writes about +1000 on row 7 for BOS and exactly nothing there for any other token.
        var layer0 = seen.DownOutputs[0];
        Assert.InRange(layer0[7], 900f, 1100f);
        for (int t = 1; t < tokens.Length; t++) Assert.Equal(0f, layer0[t * h + 7]);
        // The sink heads' contributions cancel: layer 1's MLP sees no offset on row 7.
        for (int t = 1; t < tokens.Length; t++) Assert.InRange(seen.GateInputs[1][t * h + 7], -0.5f, 0.5f);

        // Without the planted weight BOS carries no super activation and every token's row 7 dominates its normalised state.
        var spec = model.Backend.Specs.Select((s, i) => (s, i)).Single(x => x.s.Name == "model.layers.0.mlp.down_proj.weight");
        model.Backend.WriteWeights(spec.i, [7L * spec.s.Cols + 100], [0f]);
        model.Backend.ForwardLoss(batch);
        model.Backend.Observer = null;
        for (int t = 1; t < tokens.Length; t++) Assert.InRange(seen.GateInputs[1][t * h + 7], -10f, -6f);
    }

    /// <summary>Each layer's down_proj output and MLP input (gate_proj's) of the last forward pass, [tokens, hidden].</summary>
    private sealed class Activations : Cwa.Core.Engine.IActivationObserver<float>
    {
        public Dictionary<int, float[]> DownOutputs { get; } = new();
        public Dictionary<int, float[]> GateInputs { get; } = new();

        public void OnLinearInput(Cwa.Core.Models.ParameterSpec spec, ReadOnlySpan<float> x, int tokens, int features, ReadOnlySpan<bool> tokenIsReal)
        {
            if (spec.Role == Cwa.Core.Models.ParameterRole.GateProj) GateInputs[spec.Block] = x[..(tokens * features)].ToArray();
        }

        public void OnLinearOutput(Cwa.Core.Models.ParameterSpec spec, ReadOnlySpan<float> y, int tokens, int features, ReadOnlySpan<bool> tokenIsReal)
        {
            if (spec.Role == Cwa.Core.Models.ParameterRole.DownProj) DownOutputs[spec.Block] = y[..(tokens * features)].ToArray();
        }
    }

    [Fact]
    public void PlantsThatCannotWorkAreRefusedBeforeWriting()
    {
        var c = Cwa.Core.Models.TestModelPresets.Config("tiny", 512) with { BosTokenId = 509 };
        Assert.Equal(509, Cwa.Core.Models.PlantedSuperWeight.Parse("0,7,100", c).BosToken);
        foreach (var (bad, message) in new (Cwa.Core.Models.ModelConfig, string)[]
        {
            (c with { BosTokenId = 600 }, "bos_token_id inside its vocabulary"),
            (c with { BosTokenId = null }, "bos_token_id inside its vocabulary"),
            (c with { NumKvHeads = 1 }, "at least two key/value heads"),
            (c with { TieWordEmbeddings = true }, "needs untied embeddings"),
            (c with { HeadDim = 1 }, "head dimension of at least 2"),
        })
            Assert.Contains(message, Assert.Throws<Cwa.Core.InputException>(() => Cwa.Core.Models.PlantedSuperWeight.Parse("0,7,100", bad)).Message);
    }

    [Theory]
    [InlineData("1,7", "--plant-super-weight expects LAYER,ROW,COL (got '1,7')")]
    [InlineData("1,7,100", "--plant-super-weight: layer 1 is outside 0..0 (the next layer's attention carries the BOS activation)")]
    [InlineData("0,64,100", "--plant-super-weight: row 64 is outside the hidden size 0..63")]
    [InlineData("0,7,176", "--plant-super-weight: col 176 is outside the intermediate size 0..175")]
    public void BadPlantsAreInputErrors(string spec, string message)
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--plant-super-weight", spec, "--out", dir.File("m"), "--quiet");
        Assert.Equal(2, code);
        Assert.Contains(message, err);
    }
}
