using System.Text.Json;
using Cwa.Core.Ranking;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Ranking;

public class TopKAgreementTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void TheGridIsLogSpacedAndEndsAtK()
    {
        Assert.Equal([1, 2, 3, 5, 10, 20, 30, 50, 100], TopKAgreement.Grid(100));
        Assert.Equal([1, 2, 3, 5, 7], TopKAgreement.Grid(7));
        Assert.Equal([1], TopKAgreement.Grid(1));
    }

    [Fact]
    public void ListCorrelationFollowsTheTopKConvention()
    {
        List<(int, long)> a = [(0, 1), (0, 2), (0, 3)];
        Assert.Equal(1, TopKAgreement.ListSpearman(a, a, 3), 12);
        Assert.Equal(-1, TopKAgreement.ListSpearman(a, [(0, 3), (0, 2), (0, 1)], 3), 12);
        // Disjoint lists: every weight is at rank k + 1 in the other list, so the ranks disagree.
        Assert.True(TopKAgreement.ListSpearman(a, [(1, 1), (1, 2), (1, 3)], 3) < 0);
    }

    [Fact]
    public void JaccardAtTheRunsKEqualsThePairwiseAgreement()
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.Path, "--quiet", "--save-plots", "true", "--max-samples", "8",
            "--max-length", "32", "--topk", "20", "--seeds", "1,2", "--stability-check");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir.File("stability_summary.json")));
        var root = doc.RootElement;
        var points = root.GetProperty("jaccard_at_k").EnumerateArray().ToList();
        Assert.Equal(3 * TopKAgreement.Grid(20).Length, points.Count);
        var atK = points.Single(p => p.GetProperty("mode").GetString() == "per_layer" && p.GetProperty("k").GetInt32() == 20);
        Assert.Equal(root.GetProperty("pairs")[0].GetProperty("jaccard").GetDouble(), atK.GetProperty("mean_jaccard_across_seeds").GetDouble(), 12);
        Assert.Equal(root.GetProperty("disjoint_halves").GetProperty("jaccard").GetDouble(), atK.GetProperty("jaccard_halves").GetDouble(), 12);
        Assert.All(points, p => Assert.InRange(p.GetProperty("mean_jaccard_across_seeds").GetDouble(), 0, 1));
        Assert.Equal(3 * 2, root.GetProperty("rank_correlation_at_top_k").GetArrayLength());
        Assert.True(File.Exists(dir.File("plots/stability_at_k.png")));
    }
}
