using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Validation;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Validation;

public class KnownWeightsTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void TheBuiltInListMatchesModelsByShape()
    {
        var llama = TestModelPresets.Config("llama-3.1-8b-shape", 128256);
        var set = KnownWeights.Load(KnownWeights.BuiltIn, llama, LlamaLayout.Parameters(llama));
        Assert.Null(set.Note);
        Assert.Equal("builtin: Llama-3-8B", set.Origin);
        Assert.Equal([788L * 14336 + 2427, 1384L * 14336 + 2427, 4062L * 14336 + 2427], set.Weights.Select(w => w.FlatIndex));
        Assert.All(set.Weights, w => Assert.Equal("model.layers.1.mlp.down_proj.weight", w.Tensor));
        Assert.All(set.Weights, w => Assert.Contains("The Super Weight in Large Language Models", w.Source));

        var mistral = llama with { VocabSize = 32000 };
        Assert.Equal((2070L, 7310L), KnownWeights.Load(KnownWeights.BuiltIn, mistral, LlamaLayout.Parameters(mistral)).Weights.Select(w => (w.Row, w.Col)).Single());

        // LLaMA-7B and Llama-2-7B share a shape: both lists apply, each saying where its coordinates come from.
        var llama7 = llama with { VocabSize = 32000, IntermediateSize = 11008, RopeScaling = null };
        var both = KnownWeights.Load(KnownWeights.BuiltIn, llama7, LlamaLayout.Parameters(llama7));
        Assert.Equal("builtin: Llama-2-7B, LLaMA-7B", both.Origin);
        Assert.Equal([("model.layers.1.mlp.down_proj.weight", 2533L, 7890L), ("model.layers.2.mlp.down_proj.weight", 3968L, 7003L)],
            both.Weights.Select(w => (w.Tensor, w.Row, w.Col)));
        Assert.Contains("unchecked", both.Weights[0].Source);
        Assert.Contains("mengxiayu/LLMSuperWeight", both.Weights[1].Source);
        Assert.All(set.Weights, w => Assert.Contains("mengxiayu/LLMSuperWeight", w.Source));

        var demo = TestModelPresets.Config("demo", 1024);
        var none = KnownWeights.Load(KnownWeights.BuiltIn, demo, LlamaLayout.Parameters(demo));
        Assert.Empty(none.Weights);
        Assert.StartsWith("no published super weights for this model's shape (hidden 256, 4 layers", none.Note);
    }

    [Theory]
    [InlineData("off")]
    [InlineData("on")]
    public void RecallAndTheExactRankInTheTensorAgreeWithTheFullScores(string streaming)
    {
        using var dir = new TempDir();
        string[] common = ["analyze", "--model", tiny.Model, "--quiet", "--save-plots", "false", "--max-samples", "8", "--max-length", "32", "--topk", "5", "--streaming", streaming];
        var (code, _, err) = EndToEnd.Cli.Run([.. common, "--out-dir", dir.File("first")]);
        Assert.True(code == 0, err);
        // Two of the ranking's per-tensor top-5 (one in the embedding, scored chunk by chunk when streamed) and two weights from low in their tensors.
        var top = Cwa.Core.Reporting.TopWeightsCsv.Read(Path.Combine(dir.File("first"), "top_weights.csv"));
        var embed = top.First(t => t.Parameter == "model.embed_tokens.weight");
        var down = top.First(t => t.Parameter == "model.layers.1.mlp.down_proj.weight");
        File.WriteAllText(dir.File("known.csv"), "tensor,row,col,label,source\n" +
            $"{embed.Parameter},{embed.Row},{embed.Col},embedding top,first run\n{down.Parameter},{down.Row},{down.Col},down top,first run\n" +
            "layers.0.mlp.up_proj,5,7,up low,\nlayers.1.self_attn.o_proj,1,2,o low,\n");
        (code, _, err) = EndToEnd.Cli.Run([.. common, "--out-dir", dir.File("second"), "--known-weights", dir.File("known.csv"), "--dump-scores"]);
        Assert.True(code == 0, err);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("second"), "known_weights.json")));
        var weights = doc.RootElement.GetProperty("weights").EnumerateArray().ToList();
        Assert.Equal(4, weights.Count);
        Assert.True(weights[0].GetProperty("in_top_k_per_layer").GetBoolean());
        Assert.True(weights[1].GetProperty("in_top_k_per_layer").GetBoolean());
        using var dump = SafeTensorsFile.Open(Path.Combine(dir.File("second"), "scores.safetensors"));
        int hits = 0;
        foreach (var w in weights)
        {
            string tensor = w.GetProperty("tensor").GetString()!;
            var scores = new float[dump.Info(tensor).ElementCount];
            dump.Read(tensor, scores);
            int cols = (int)(scores.Length / (dump.Info(tensor).Shape[0]));
            float s = scores[w.GetProperty("row").GetInt64() * cols + w.GetProperty("col").GetInt64()];
            Assert.Equal(s, w.GetProperty("score").GetSingle());
            long rank = 1 + scores.LongCount(x => x > s);
            Assert.Equal(rank, w.GetProperty("rank_in_tensor").GetInt64());
            Assert.Equal(rank <= 5, w.GetProperty("in_top_k_per_layer").GetBoolean());
            if (rank <= 5) hits++;
        }
        double recall = doc.RootElement.GetProperty("recall_per_layer").GetDouble();
        Assert.Equal(hits / 4.0, recall);
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("second"), "experiment_manifest.json")));
        Assert.Equal(recall, manifest.RootElement.GetProperty("results").GetProperty("known_weights_recall_per_layer").GetDouble());
        Assert.Contains("Known critical weights", File.ReadAllText(Path.Combine(dir.File("second"), "report.html")));
    }

    [Fact]
    public void AnUnknownTensorIsRefusedBeforeLoading()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("known.csv"), "tensor,row,col\nlayers.9.mlp.down_proj,0,0\n");
        var (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("out"), "--known-weights", dir.File("known.csv"));
        Assert.Equal(2, code);
        Assert.Contains("known.csv:2: unknown tensor 'layers.9.mlp.down_proj'", err);
        Assert.False(Directory.Exists(dir.File("out")));
    }
}
