using Cwa.Core.Ranking;
using Cwa.Core.Reporting;

namespace Cwa.Core.Pipeline;

public sealed record RunPair(string A, string B, double Jaccard, double Overlap, double MeanPerTensorJaccard, IReadOnlyDictionary<string, double> PerTensorJaccard);

/// <param name="Warnings">why a low overlap may mean nothing (runs of different models)</param>
public sealed record ComparisonResult(int TopK, IReadOnlyList<string> Runs, IReadOnlyList<RunPair> Pairs, IReadOnlyList<string> Warnings);

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
        foreach (var (label, rows) in tables)
            if (rows.Count < k)
                throw new InputException($"--topk {k} is larger than the {rows.Count} rows of run '{label}' (omit --topk to use the smallest row count)");
        var warnings = DifferentModels(runs);
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
        var result = new ComparisonResult(k, tables.Select(t => t.Label).ToList(), pairs, warnings);
        Directory.CreateDirectory(outDir);
        JsonOutput.Write(Path.Combine(outDir, "compare.json"), result);
        int n = tables.Count;
        var m = new double[n, n];
        for (int i = 0; i < n; i++) m[i, i] = 1;
        int idx = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) m[i, j] = m[j, i] = pairs[idx++].Jaccard;
        var labels = result.Runs.ToArray();
        Plots.Heatmap(Path.Combine(outDir, "compare_overlap.png"), $"Top-{k} Jaccard similarity between runs", labels, labels, m, "Jaccard", logScale: false, annotate: true, unitRange: true);
        return result;
    }

    private static (string, int, int) Key(RankedWeight w) => (w.Parameter, w.Row, w.Col);

    /// <summary>
    /// Runs whose manifests name different models (by the shard header hashes: shapes, dtypes and offsets) compare
    /// positions in different networks: a Jaccard of 0 there says nothing about the ranking, so it is said.
    /// </summary>
    private static List<string> DifferentModels(IReadOnlyList<string> runs)
    {
        var identities = new List<(string Label, string Model, string Identity)>();
        foreach (var r in runs)
        {
            string dir = File.Exists(r) ? Path.GetDirectoryName(Path.GetFullPath(r))! : r;
            string manifest = Path.Combine(dir, ExperimentManifest.FileName);
            if (!File.Exists(manifest)) continue;
            try
            {
                var model = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(manifest))?["model"];
                if (model == null) continue;
                identities.Add((Label(r), model["name"]?.ToString() ?? "?", model["shard_header_sha256"]?.ToJsonString() ?? model["path"]?.ToString() ?? ""));
            }
            catch (System.Text.Json.JsonException) { }
        }
        return identities.Skip(1).Where(x => x.Identity != identities[0].Identity)
            .Select(x => $"runs '{identities[0].Label}' and '{x.Label}' analysed different models ({identities[0].Model} vs {x.Model}): their overlap compares coordinates of different networks").ToList();
    }

    private static string Label(string path) => Path.GetFileName(Path.TrimEndingDirectorySeparator(File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))! : Path.GetFullPath(path)));
}
