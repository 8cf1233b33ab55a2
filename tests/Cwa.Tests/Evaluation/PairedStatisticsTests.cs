using System.Text.Json;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Ranking;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Evaluation;

public class PairedStatisticsTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static List<EvalResult> Units(params (double Nll, long Tokens)[] u) => u.Select(x => new EvalResult(x.Nll, x.Tokens, 0)).ToList();

    [Fact]
    public void AConstantPerTokenShiftHasAZeroWidthInterval()
    {
        var control = Units((10, 5), (30, 10), (8, 4), (50, 20));
        var top = control.Select(c => c with { SumNll = c.SumNll + 0.5 * c.Tokens }).ToList();
        var p = PairedDifference.Of(top, [control], 7)!;
        Assert.Equal(4, p.Units);
        Assert.Equal(0.5, p.MeanNllDifference, 12);
        Assert.Equal(0.5, p.Ci95Low, 12);
        Assert.Equal(0.5, p.Ci95High, 12);
        Assert.Equal(1.0, p.ShareOfUnitsWorse);
    }

    [Fact]
    public void TheIntervalCoversTheObservedDifferenceAndIsSeeded()
    {
        var rng = new Random(3);
        var control = Enumerable.Range(0, 60).Select(_ => new EvalResult(rng.NextDouble() * 100, 20, 0)).ToList();
        var top = control.Select(c => c with { SumNll = c.SumNll + rng.NextDouble() * 4 - 1 }).ToList();
        var draws = new List<IReadOnlyList<EvalResult>> { control, control.Select(c => c with { SumNll = c.SumNll + 0.2 }).ToList() };
        var a = PairedDifference.Of(top, draws, 11)!;
        Assert.Equal(a, PairedDifference.Of(top, draws, 11));
        double expected = (top.Sum(t => t.SumNll) - draws.Average(d => d.Sum(x => x.SumNll))) / top.Sum(t => t.Tokens);
        Assert.Equal(expected, a.MeanNllDifference, 12);
        Assert.InRange(a.MeanNllDifference, a.Ci95Low, a.Ci95High);
        Assert.True(a.Ci95High > a.Ci95Low);
        Assert.Null(PairedDifference.Of(top, [control.Take(59).ToList()], 11));
        Assert.Null(PairedDifference.Of(top.Select(t => t with { SumNll = double.PositiveInfinity }).ToList(), [control], 11));
    }

    [Fact]
    public void MatchedRandomWeightsComeFromTheSameMagnitudeBins()
    {
        var w = Enumerable.Range(0, 10_000).Select(i => (float)((i % 2 == 0 ? 1 : -1) * i * 1e-3)).ToArray();
        long[] top = [9_999, 9_998, 9_990, 5_000, 12];
        var picked = MatchedRandomSelector.Select(w, top, 5, 0);
        Assert.Equal(top.Length, picked.Length);
        Assert.Equal(picked.Length, picked.Distinct().Count());
        Assert.Empty(picked.Intersect(top));
        // Bins are 5% quantiles of |W| = index here: three picks among the largest 5%, one near the middle, one among the smallest.
        Assert.Equal(3, picked.Count(p => p >= 9_500));
        Assert.Single(picked, p => p is >= 4_500 and < 5_500);
        Assert.Single(picked, p => p < 500);
        Assert.Equal(picked, MatchedRandomSelector.Select(w, top, 5, 0));
    }

    [Fact]
    public void EveryControlGetsAPairedIntervalPerText()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("eval.txt"), Cwa.Core.Data.BuiltInCorpus.Evaluation.Take(12));
        var (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("out"), "--quiet", "--save-plots", "false",
            "--max-samples", "8", "--max-length", "32", "--topk", "10", "--eval-file", dir.File("eval.txt"),
            "--perturb", "zero", "--controls", "random_k,bottom_k,random_k_matched", "--control-seeds", "2");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("out"), "perturbation_results.json")));
        double topNll = doc.RootElement.GetProperty("top_k_run").GetProperty("nll").GetDouble();
        var controls = doc.RootElement.GetProperty("controls").EnumerateArray().ToList();
        Assert.Equal(["random_k", "bottom_k", "random_k_matched"], controls.Select(c => c.GetProperty("selection").GetString()));
        foreach (var c in controls)
        {
            var paired = c.GetProperty("paired");
            Assert.Equal(12, paired.GetProperty("units").GetInt32());
            double controlNll = c.GetProperty("runs").EnumerateArray().Average(x => x.GetProperty("nll").GetDouble());
            Assert.Equal(topNll - controlNll, paired.GetProperty("mean_nll_difference").GetDouble(), 9);
            Assert.InRange(paired.GetProperty("mean_nll_difference").GetDouble(), paired.GetProperty("ci95_low").GetDouble(), paired.GetProperty("ci95_high").GetDouble());
        }
        Assert.Equal(2, controls[2].GetProperty("draws").GetInt32());
        Assert.All(controls[2].GetProperty("runs").EnumerateArray(), x => Assert.Equal(controls[0].GetProperty("runs")[0].GetProperty("weights_touched").GetInt64(), x.GetProperty("weights_touched").GetInt64()));
    }
}
