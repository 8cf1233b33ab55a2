using Cwa.Core.Ranking;
using Cwa.Core.Reporting;

namespace Cwa.Core.Pipeline;

public sealed record RunPair(string A, string B, double Jaccard, double Overlap, double MeanPerTensorJaccard, IReadOnlyDictionary<string, double> PerTensorJaccard);

public sealed record ComparisonResult(int TopK, IReadOnlyList<string> Runs, IReadOnlyList<RunPair> Pairs);

/// <summary>
/// Compares runs on the weights they rank highest. Rows are re-sorted by score (ties by parameter, row, col), so
/// the comparison never depends on file order; per tensor, each run's own top rows in that tensor are compared.
/// </summary>
public static class RunComparison
{
    public static ComparisonResult Run(IReadOnlyList<string> runs, int? topK, string outDir)
    {
        var tables = runs.Select(r => (Label: Label(r), Rows: TopWeightsCsv.Read(File.Exists(r) ? r : Path.Combine(r, "top_weights.csv"))
            .OrderByDescending(w => w.Score).ThenBy(w => w.Parameter, StringComparer.Ordinal).ThenBy(w => w.Row).ThenBy(w => w.Col).ToList())).ToList();
        int k = topK ?? tables.Min(t => t.Rows.Count);
        if (k <= 0) throw new InputException("--topk must be positive and every run must have rows");
        var pairs = new List<RunPair>();
        for (int i = 0; i < tables.Count; i++)
            for (int j = i + 1; j < tables.Count; j++)
            {
                var a = tables[i].Rows.Take(k).Select(Key).ToHashSet();
                var b = tables[j].Rows.Take(k).Select(Key).ToHashSet();
                var perTensor = new Dictionary<string, double>();
                foreach (var p in tables[i].Rows.Select(r => r.Parameter).Intersect(tables[j].Rows.Select(r => r.Parameter)).Order(StringComparer.Ordinal))
                {
                    var ra = tables[i].Rows.Where(r => r.Parameter == p).ToList();
                    var rb = tables[j].Rows.Where(r => r.Parameter == p).ToList();
                    int kt = Math.Min(ra.Count, rb.Count);
                    perTensor[p] = SetOverlap.Jaccard(ra.Take(kt).Select(Key).ToHashSet(), rb.Take(kt).Select(Key).ToHashSet());
                }
                pairs.Add(new RunPair(tables[i].Label, tables[j].Label, SetOverlap.Jaccard(a, b), SetOverlap.OverlapCoefficient(a, b),
                    perTensor.Count == 0 ? double.NaN : perTensor.Values.Average(), perTensor));
            }
        var result = new ComparisonResult(k, tables.Select(t => t.Label).ToList(), pairs);
        Directory.CreateDirectory(outDir);
        JsonOutput.Write(Path.Combine(outDir, "compare.json"), result);
        int n = tables.Count;
        var m = new double[n, n];
        for (int i = 0; i < n; i++) m[i, i] = 1;
        int idx = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) m[i, j] = m[j, i] = pairs[idx++].Jaccard;
        var labels = result.Runs.ToArray();
        Plots.Heatmap(Path.Combine(outDir, "compare_overlap.png"), $"Top-{k} Jaccard similarity between runs", labels, labels, m, "Jaccard", logScale: false, annotate: true);
        return result;
    }

    private static (string, int, int) Key(RankedWeight w) => (w.Parameter, w.Row, w.Col);

    private static string Label(string path) => Path.GetFileName(Path.TrimEndingDirectorySeparator(File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))! : Path.GetFullPath(path)));
}
