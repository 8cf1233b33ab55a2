using System.Text.Json;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Tokenization;

namespace Cwa.Tests.EndToEnd;

public class WeightsAndDumpTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void NonFiniteWeightIsRefusedNamingTheTensorAndIndex()
    {
        using var dir = new TempDir();
        var tok = ByteLevelBpeTrainer.Train(BuiltInCorpus.All.Take(60), 300);
        var config = TestModelPresets.Config("tiny", tok.VocabSize);
        TestModelGenerator.Write(dir.File("m"), config, DType.BF16, (i, spec, dst) =>
        {
            TestModelGenerator.Fill(dst, spec, 1, i);
            if (spec.Name == "model.layers.1.mlp.up_proj.weight") dst[77] = float.NaN;
        }, tok.TokenizerJson, tok.TokenizerConfigJson);
        // The CPU path widens to fp32 first; the device path and the streamed CPU path (whose products read the
        // mapped bf16) check the stored bf16 bits themselves.
        foreach (var device in new[] { "cpu", "ilgpu-cpu", "cpu --streaming on" })
        {
            var (code, _, err) = Cli.Run(["analyze", "--model", dir.File("m"), "--out-dir", dir.File("o"), "--quiet", "--device", .. device.Split(' ')]);
            Assert.Equal(2, code);
            Assert.Contains("tensor model.layers.1.mlp.up_proj.weight holds a non-finite value at flat index 77", err);
        }
    }

    [Fact]
    public void DumpScoresWritesEveryScoreConsistentWithTheStats()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", outDir.Path, "--quiet", "--dump-scores", "--save-plots", "false",
            "--max-samples", "8", "--max-length", "32", "--topk", "5");
        Assert.True(code == 0, err);
        using var dump = SafeTensorsFile.Open(outDir.File("scores.safetensors"));
        using var stats = JsonDocument.Parse(File.ReadAllText(outDir.File("sensitivity_stats.json")));
        Assert.Equal(stats.RootElement.EnumerateObject().Select(p => p.Name).Order(), dump.Names.Order());
        foreach (var t in stats.RootElement.EnumerateObject())
        {
            var scores = new float[dump.Info(t.Name).ElementCount];
            dump.Read(t.Name, scores);
            Assert.Equal(t.Value.GetProperty("max").GetDouble(), scores.Max(), 6);
            Assert.Equal(t.Value.GetProperty("mean").GetDouble(), scores.Average(v => (double)v), 1e-9);
        }
        Assert.Equal("grad_x_weight", dump.Metadata["metric"]);
    }
}
