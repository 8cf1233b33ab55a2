using System.Text.Json;

namespace Cwa.Core.Export;

/// <summary>One scored tensor of a finished run: its name, size and summed score (from sensitivity_stats.json).</summary>
public sealed record TensorMass(string Tensor, long NumWeights, double Sum)
{
    public double Density => NumWeights > 0 ? Sum / NumWeights : 0;
}

/// <summary>
/// Which tensors to keep at higher precision under a budget: tensors in order of sensitivity per weight (summed score
/// over size), taken while the kept weights stay within KeepFraction of all scored weights. Ordering by density keeps the
/// most score per kept weight (the fractional-knapsack optimum; a tensor that does not fit is skipped, smaller ones may
/// still fit).
/// </summary>
public sealed record ExportPlan(IReadOnlyList<TensorMass> Tensors, IReadOnlyList<TensorMass> Kept, double KeepFraction)
{
    public double KeptScoreShare => Tensors.Sum(t => t.Sum) is > 0 and var total ? Kept.Sum(t => t.Sum) / total : 0;
    public double KeptWeightShare => Tensors.Sum(t => (double)t.NumWeights) is > 0 and var total ? Kept.Sum(t => (double)t.NumWeights) / total : 0;

    /// <param name="candidate">the tensors the target format can name (e.g. GPTQModel and llm-compressor only the blocks' modules), so the budget goes to tensors that are written</param>
    public static ExportPlan Of(IReadOnlyList<TensorMass> tensors, double keepFraction, Func<string, bool>? candidate = null)
    {
        if (!(keepFraction > 0 && keepFraction <= 1)) throw new InputException($"--keep-fraction must be in (0, 1] (got {keepFraction})");
        long budget = (long)Math.Floor(keepFraction * tensors.Sum(t => t.NumWeights));
        var kept = new List<TensorMass>();
        long used = 0;
        foreach (var t in tensors.Where(t => t.Sum > 0 && (candidate?.Invoke(t.Tensor) ?? true)).OrderByDescending(t => t.Density).ThenBy(t => t.Tensor, StringComparer.Ordinal))
            if (used + t.NumWeights <= budget)
            {
                kept.Add(t);
                used += t.NumWeights;
            }
        return new ExportPlan(tensors, kept, keepFraction);
    }

    /// <summary>The 2-D tensors of a run folder's sensitivity_stats.json (a 1-D one is not quantised by the tools exported to).</summary>
    public static IReadOnlyList<TensorMass> Read(string runDir)
    {
        string path = Path.Combine(runDir, "sensitivity_stats.json");
        if (!File.Exists(path)) throw new InputException($"{runDir}: not a cwa run folder (no sensitivity_stats.json)");
        InputFiles.EnsureRegular(path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.EnumerateObject()
                .Where(p => !p.Name.EndsWith("norm.weight", StringComparison.Ordinal) && !p.Name.EndsWith(".bias", StringComparison.Ordinal))
                .Select(p =>
                {
                    long n = p.Value.GetProperty("num_weights").GetInt64();
                    // Runs before the sum was written: mean x count is the same number up to rounding.
                    double sum = p.Value.TryGetProperty("sum", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetDouble()
                        : p.Value.GetProperty("mean").ValueKind == JsonValueKind.Number ? p.Value.GetProperty("mean").GetDouble() * n : 0;
                    return new TensorMass(p.Name, n, sum);
                }).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{path}: cannot read it ({e.Message})");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InputException($"{path}: malformed sensitivity statistics ({e.Message.Split('\n')[0]})");
        }
    }
}
