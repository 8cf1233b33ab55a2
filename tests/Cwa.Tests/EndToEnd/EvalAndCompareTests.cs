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
}
