using System.Text.Json;
using Cwa.Core.Reporting;

namespace Cwa.Tests.EndToEnd;

public class EvalAndCompareTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void EvalReportsPerplexityConsistentWithNll()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("held.txt"), ["The quick brown fox jumps over the lazy dog.", "A second, different held-out sentence."]);
        var (code, output, err) = Cli.Run("eval", "--model", tiny.Model, "--data-file", dir.File("held.txt"), "--quiet");
        Assert.True(code == 0, err);
        var m = System.Text.RegularExpressions.Regex.Match(output, @"tokens (\d+)\s+nll ([\d.]+)\s+perplexity ([\d.]+)");
        Assert.True(m.Success, output);
        double nll = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        double ppl = double.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(Math.Exp(nll), ppl, ppl * 1e-3);
        // A random model is close to uniform over its 512 tokens.
        Assert.InRange(ppl, 200, 2000);
    }

    [Fact]
    public void CompareUsesTheTrueTopKByScoreNotFileOrder()
    {
        using var dir = new TempDir();
        string[] common = ["analyze", "--model", tiny.Model, "--quiet", "--save-plots", "false", "--max-samples", "8", "--max-length", "32", "--topk", "10", "--mode", "global"];
        Assert.Equal(0, Cli.Run([.. common, "--out-dir", dir.File("a")]).Code);
        Assert.Equal(0, Cli.Run([.. common, "--out-dir", dir.File("b")]).Code);
        Assert.Equal(0, Cli.Run([.. common, "--metric", "magnitude", "--out-dir", dir.File("c")]).Code);

        // Shuffle run b's rows: the comparison must not change.
        var lines = File.ReadAllLines(dir.File("b/top_weights.csv"));
        File.WriteAllLines(dir.File("b/top_weights.csv"), [lines[0], .. lines.Skip(1).Reverse()]);

        var (code, output, err) = Cli.Run("compare", dir.File("a"), dir.File("b"), dir.File("c"), "--out", dir.File("cmp"));
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir.File("cmp/compare.json")));
        var pairs = doc.RootElement.GetProperty("pairs").EnumerateArray().ToList();
        Assert.Equal(3, pairs.Count);
        Assert.Equal(1.0, pairs[0].GetProperty("jaccard").GetDouble());   // same run twice
        Assert.True(pairs[1].GetProperty("jaccard").GetDouble() < 1.0);   // grad_x_weight vs magnitude
        Assert.True(File.Exists(dir.File("cmp/compare_overlap.png")));
        Assert.Contains("Jaccard", output);
        Assert.Equal(2, Cli.Run("compare", dir.File("a")).Code);
    }

    [Fact]
    public void CompareRefusesAKTheRunsDoNotHaveAndWarnsAboutDifferentModels()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Cli.Run("create-test-model", "--preset", "demo", "--out", dir.File("other"), "--quiet").Code);
        string[] common = ["analyze", "--quiet", "--save-plots", "false", "--max-samples", "4", "--max-length", "24", "--topk", "3", "--mode", "global"];
        Assert.Equal(0, Cli.Run([.. common, "--model", tiny.Model, "--out-dir", dir.File("a")]).Code);
        Assert.Equal(0, Cli.Run([.. common, "--model", dir.File("other"), "--out-dir", dir.File("b")]).Code);

        var (code, _, err) = Cli.Run("compare", dir.File("a"), dir.File("b"), "--topk", "50", "--out", dir.File("cmp"));
        Assert.Equal(2, code);
        Assert.Contains("--topk 50 is larger than the 3 rows of run 'a'", err);

        // --out-dir, the name analyze and merge use, is the same option (it was read as a third run).
        (code, _, err) = Cli.Run("compare", dir.File("a"), dir.File("b"), "--out-dir", dir.File("cmp"));
        Assert.Equal(0, code);
        Assert.Contains("warning: runs 'a' and 'b' analysed different models", err);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir.File("cmp/compare.json")));
        Assert.Single(doc.RootElement.GetProperty("warnings").EnumerateArray());
    }

    [Fact]
    public void AWeightThatOverflowsF16IsNamedNotCalledNonFinite()
    {
        using var dir = new TempDir();
        string model = dir.File("m");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.EnumerateFiles(tiny.Model)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        // 1e6 fits in fp32 (and bf16) but not in fp16 (max 65504).
        foreach (var shard in Directory.EnumerateFiles(model, "*.safetensors"))
        {
            List<(string Name, float[] Values, long[] Shape)> tensors;
            Dictionary<string, string> meta;
            using (var f = Cwa.Core.Checkpoints.SafeTensorsFile.Open(shard))
            {
                meta = f.Metadata.ToDictionary();
                tensors = f.Names.Select(n => { var v = new float[f.Info(n).ElementCount]; f.Read(n, v); return (n, v, f.Shape(n)); }).ToList();
            }
            foreach (var t in tensors.Where(t => t.Name == "model.layers.0.mlp.up_proj.weight")) t.Values[7] = 1e6f;
            using var w = new Cwa.Core.Checkpoints.SafeTensorsWriter(shard, tensors.Select(t => (t.Name, Cwa.Core.Checkpoints.DType.F32, t.Shape)).ToList(), meta);
            foreach (var t in tensors) w.Write(t.Name, t.Values);
            w.Commit();
        }
        var (code, _, err) = Cli.Run("eval", "--model", model, "--dtype", "f16", "--quiet");
        Assert.Equal(2, code);
        Assert.Contains("tensor model.layers.0.mlp.up_proj.weight holds 1000000 at flat index 7, which overflows --dtype f16; use bf16 or f32", err);
        Assert.Equal(0, Cli.Run("eval", "--model", model, "--dtype", "bf16", "--quiet", "--max-length", "16").Code);
    }

    [Fact]
    public void EvalsMemoryRefusalSuggestsOnlyWhatEvalHas()
    {
        var (code, _, err) = Cli.Run("eval", "--model", tiny.Model, "--streaming", "off", "--memory-budget", "1M", "--quiet");
        Assert.Equal(1, code);
        Assert.Contains("a smaller --batch-size or a shorter --max-length", err);
        Assert.DoesNotContain("--recompute", err);
    }
}
