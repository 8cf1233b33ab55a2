using Cwa.Core.Data;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Pipeline;

public sealed record PairAgreement(string A, string B, double Jaccard, double Overlap, double SpearmanTensorMeans);

public sealed record StabilityReport(IReadOnlyList<string> Runs, double[,] JaccardMatrix, IReadOnlyList<PairAgreement> Pairs, double MeanJaccardAcrossSeeds, PairAgreement? DisjointHalves)
{
    /// <summary>Jaccard of the top-k sets as k grows, per ranking mode: mean over seed pairs, and between the disjoint halves.</summary>
    public IReadOnlyList<StabilityPoint> JaccardAtK { get; init; } = [];
    /// <summary>Rank correlation of the top-k lists at the run's k, per mode and pair.</summary>
    public IReadOnlyList<RankAgreement> RankCorrelations { get; init; } = [];
}

public sealed record StabilityPoint(string Mode, int K, double? MeanJaccardAcrossSeeds, double? JaccardHalves);

public sealed record RankAgreement(string Mode, string A, string B, double Spearman);

/// <summary>
/// Does the ranking depend on which calibration texts were used? Each seed resamples the calibration set; the
/// stability check also ranks on two disjoint halves of the texts. Agreement: Jaccard and overlap coefficient of
/// the top-k sets, and Spearman correlation of per-tensor mean scores (does the order of tensors agree).
/// </summary>
public static class StabilityAnalysis
{
    /// <summary>The calibration batches of every extra seed and of the two disjoint halves, built (and checked) before the heavy work.</summary>
    public sealed record Plan(IReadOnlyList<(int Seed, IReadOnlyList<Batch> Batches)> Seeds, (IReadOnlyList<Batch> A, IReadOnlyList<Batch> B)? Halves);

    public static Plan Prepare(ITextTokenizer tokenizer, CalibrationData data, AnalyzeRequest r)
    {
        var seeds = r.Seeds.Skip(1).Select(seed => (seed, data.CalibrationBatches(tokenizer, r, (ulong)seed))).ToList();
        if (!r.StabilityCheck) return new Plan(seeds, null);
        if (data.CalibrationTexts.Count < 2)
            throw new InputException($"{data.Source}: --stability-check needs at least 2 calibration texts to split into disjoint halves");
        var order = CalibrationSet.Shuffle(data.CalibrationTexts.Count, (ulong)r.Seeds[0]);
        var a = order.Where((_, i) => i % 2 == 0).Select(i => data.CalibrationTexts[i]).ToList();
        var b = order.Where((_, i) => i % 2 == 1).Select(i => data.CalibrationTexts[i]).ToList();
        return new Plan(seeds, (data.CalibrationBatches(tokenizer, r, (ulong)r.Seeds[0], a), data.CalibrationBatches(tokenizer, r, (ulong)r.Seeds[0], b)));
    }

    public static StabilityReport Run(LoadedModel model, Plan plan, AnalyzeRequest r, SensitivityMetric metric, ObdCurvature curvature,
        RankingMode mode, RankingResult first, IProgressSink progress)
    {
        var runs = new List<(string Label, HashSet<(int, long)> Set, double[] Means)> { ($"seed {r.Seeds[0]}", first.AsSet(r.TopK), Means(first)) };
        var rankings = new List<(string Label, RankingResult Ranking)> { ($"seed {r.Seeds[0]}", first) };
        foreach (var (seed, batches) in plan.Seeds)
        {
            var ranking = Rank(model, batches, r, metric, curvature, mode, new LabelledProgress(progress, $"stability, seed {seed}"));
            runs.Add(($"seed {seed}", ranking.AsSet(r.TopK), Means(ranking)));
            rankings.Add(($"seed {seed}", ranking));
        }
        int n = runs.Count;
        var matrix = new double[n, n];
        var pairs = new List<PairAgreement>();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                matrix[i, j] = SetOverlap.Jaccard(runs[i].Set, runs[j].Set);
                if (j > i) pairs.Add(Compare(runs[i], runs[j]));
            }
        PairAgreement? halves = null;
        (RankingResult A, RankingResult B)? halfRankings = null;
        if (plan.Halves is var (a, b))
        {
            var ra = Rank(model, a, r, metric, curvature, mode, new LabelledProgress(progress, "stability, half A"));
            var rb = Rank(model, b, r, metric, curvature, mode, new LabelledProgress(progress, "stability, half B"));
            halves = Compare(("half A", ra.AsSet(r.TopK), Means(ra)), ("half B", rb.AsSet(r.TopK), Means(rb)));
            halfRankings = (ra, rb);
        }
        double meanJ = pairs.Count == 0 ? 1 : pairs.Average(p => p.Jaccard);
        var (curve, correlations) = AtK(rankings, halfRankings, r.TopK);
        return new StabilityReport(runs.Select(x => x.Label).ToList(), matrix, pairs, meanJ, halves) { JaccardAtK = curve, RankCorrelations = correlations };
    }

    /// <summary>Stability as a function of k for every mode, from the rankings already computed (no extra pass).</summary>
    private static (List<StabilityPoint>, List<RankAgreement>) AtK(List<(string Label, RankingResult Ranking)> seeds, (RankingResult A, RankingResult B)? halves, int topK)
    {
        var seedPairs = seeds.SelectMany((x, i) => seeds.Skip(i + 1).Select(y => (x, y))).ToList();
        var curve = new List<StabilityPoint>();
        var correlations = new List<RankAgreement>();
        foreach (var m in TopKAgreement.Modes)
        {
            foreach (int k in TopKAgreement.Grid(topK))
                curve.Add(new StabilityPoint(m.Name(), k,
                    seedPairs.Count == 0 ? null : seedPairs.Average(p => TopKAgreement.Jaccard(p.x.Ranking, p.y.Ranking, m, k)),
                    halves is var (ha, hb) ? TopKAgreement.Jaccard(ha, hb, m, k) : null));
            foreach (var (x, y) in seedPairs)
                correlations.Add(new RankAgreement(m.Name(), x.Label, y.Label, TopKAgreement.RankCorrelation(x.Ranking, y.Ranking, m, topK)));
            if (halves is var (h1, h2))
                correlations.Add(new RankAgreement(m.Name(), "half A", "half B", TopKAgreement.RankCorrelation(h1, h2, m, topK)));
        }
        return (curve, correlations);
    }

    private static RankingResult Rank(LoadedModel model, IReadOnlyList<Batch> batches, AnalyzeRequest r, SensitivityMetric metric, ObdCurvature curvature,
        RankingMode mode, IProgressSink progress)
    {
        return RankingPass.Run(model, batches, metric, curvature, mode, r.TopK, r, null, progress).Ranking;
    }

    private static double[] Means(RankingResult r) => r.Stats.Select(s => s.Mean).ToArray();

    private static PairAgreement Compare((string Label, HashSet<(int, long)> Set, double[] Means) a, (string Label, HashSet<(int, long)> Set, double[] Means) b) =>
        new(a.Label, b.Label, SetOverlap.Jaccard(a.Set, b.Set), SetOverlap.OverlapCoefficient(a.Set, b.Set), SetOverlap.Spearman(a.Means, b.Means));

    /// <summary>Names each phase of a stability run after the run, so logs say which ranking a line belongs to.</summary>
    private sealed class LabelledProgress(IProgressSink inner, string label) : IProgressSink
    {
        public IPhaseProgress Start(string phase, double total) => inner.Start($"{label}: {phase}", total);
        public void Info(string message) => inner.Info($"{label}: {message}");
    }
}
