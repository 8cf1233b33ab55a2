using System.Globalization;
using System.Text.Json;
using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Core.Perturbation;

/// <summary>One weight named in a targets file, as written there (Where: "FILE:LINE" or "FILE: entry N" for errors).</summary>
public sealed record WeightTarget(string Tensor, long Row, long? Col, string? Label, string? Source, string Where);

/// <summary>A target matched to the model: tensor index, flat index into the [out, in] tensor, and its full name.</summary>
public sealed record ResolvedTarget(int TensorIndex, long FlatIndex, string Tensor, long Row, long Col, string? Label, string? Source)
{
    public string Name => Label ?? $"{Tensor}[{Row}, {Col}]";
}

/// <summary>
/// Reads a list of weights to perturb: a CSV with a header (top_weights.csv's `parameter,indices`, or the
/// known-weights columns `tensor,row,col[,label,source]`, optionally `layer` to expand a per-layer name) or a JSON
/// array of objects with the same fields (`indices` may be a string "(r, c)" or an array [r, c]). Names match the
/// model's tensors exactly, or after adding the "model." prefix / ".weight" suffix that checkpoints use.
/// </summary>
public static class WeightTargets
{
    public static IReadOnlyList<WeightTarget> Read(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) throw new InputException($"{path}: targets file not found");
        InputFiles.EnsureRegular(path);
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InputException($"{path}: cannot read the targets file ({e.Message})"); }
        var targets = text.TrimStart().StartsWith('[') || text.TrimStart().StartsWith('{') ? FromJson(path, text) : FromCsv(path, text);
        if (targets.Count == 0) throw new InputException($"{path}: the targets file names no weights");
        return targets;
    }

    public static IReadOnlyList<ResolvedTarget> Resolve(IReadOnlyList<WeightTarget> targets, IReadOnlyList<ParameterSpec> specs)
    {
        var byName = specs.Select((s, i) => (s.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        var resolved = new List<ResolvedTarget>(targets.Count);
        foreach (var t in targets)
        {
            int? index = Candidates(t.Tensor).Select(n => byName.TryGetValue(n, out int i) ? i : (int?)null).FirstOrDefault(i => i != null);
            if (index is not int ti)
                throw new InputException($"{t.Where}: unknown tensor '{t.Tensor}' (the model's tensors are named like '{specs.FirstOrDefault(s => s.Block >= 0 && s.Is2D)?.Name ?? specs[0].Name}')");
            var spec = specs[ti];
            if (spec.Is2D && t.Col == null)
                throw new InputException($"{t.Where}: {spec.Name} is 2-D [{string.Join(", ", spec.Shape)}]: give a column as well as row {t.Row}");
            long col = t.Col ?? 0;
            bool inRange = spec.Is2D ? t.Row >= 0 && t.Row < spec.Rows && col >= 0 && col < spec.Cols : t.Row >= 0 && t.Row < spec.Rows && col == 0;
            if (!inRange)
                throw new InputException($"{t.Where}: index ({t.Row}, {col}) is outside {spec.Name} [{string.Join(", ", spec.Shape)}]");
            resolved.Add(new ResolvedTarget(ti, t.Row * spec.Cols + col, spec.Name, t.Row, col, t.Label, t.Source));
        }
        return resolved;
    }

    /// <summary>All resolved targets as one set: per tensor, sorted, each weight once.</summary>
    public static List<TensorSelection> Joint(IEnumerable<ResolvedTarget> targets) =>
        targets.GroupBy(t => t.TensorIndex).OrderBy(g => g.Key)
            .Select(g => new TensorSelection(g.Key, g.Select(t => t.FlatIndex).Distinct().Order().ToArray())).ToList();

    private static IEnumerable<string> Candidates(string name)
    {
        yield return name;
        yield return name + ".weight";
        yield return "model." + name;
        yield return "model." + name + ".weight";
    }

    private static List<WeightTarget> FromCsv(string path, string text)
    {
        var lines = text.Replace("\r\n", "\n").Split('\n');
        var header = Csv.Split(lines[0].TrimStart('\uFEFF')).Select(h => h.Trim().ToLowerInvariant()).ToList();
        int Col(params string[] names) => names.Select(n => header.IndexOf(n)).FirstOrDefault(i => i >= 0, -1);
        int tensor = Col("parameter", "tensor", "name"), indices = Col("indices", "index"), row = Col("row"), col = Col("col", "column");
        int layer = Col("layer"), label = Col("label"), source = Col("source");
        if (tensor < 0 || (indices < 0 && row < 0))
            throw new InputException($"{path}: a targets CSV needs a header with 'parameter' (or 'tensor') and 'indices' (or 'row' and 'col'); found '{lines[0]}'");
        // Trailing optional columns (label, source) may be left out; the ones that locate the weight may not.
        int needed = new[] { tensor, indices, row, col }.Max() + 1;
        var targets = new List<WeightTarget>();
        for (int n = 1; n < lines.Length; n++)
        {
            if (lines[n].Trim().Length == 0) continue;
            string where = $"{path}:{n + 1}";
            var f = Csv.Split(lines[n]);
            string Field(int i) => i >= 0 && i < f.Count ? f[i].Trim() : "";
            if (f.Count < needed) throw new InputException($"{where}: expected at least {needed} columns, found {f.Count}");
            var (r, c) = indices >= 0 ? ParseIndices(Field(indices), where) : (Integer(Field(row), "row", where), col >= 0 && Field(col).Length > 0 ? Integer(Field(col), "col", where) : (long?)null);
            targets.Add(new WeightTarget(WithLayer(Field(tensor), layer >= 0 ? Field(layer) : "", where), r, c, NullIfEmpty(Field(label)), NullIfEmpty(Field(source)), where));
        }
        return targets;
    }

    private static List<WeightTarget> FromJson(string path, string text)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e) { throw new InputException($"{path}: not valid JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object)
                root = new[] { "targets", "weights" }.Select(k => root.TryGetProperty(k, out var v) ? v : default).FirstOrDefault(v => v.ValueKind == JsonValueKind.Array);
            if (root.ValueKind != JsonValueKind.Array)
                throw new InputException($"{path}: expected a JSON array of targets (or an object with a 'targets' array)");
            var targets = new List<WeightTarget>();
            int n = 0;
            foreach (var e in root.EnumerateArray())
            {
                string where = $"{path}: entry {++n}";
                if (e.ValueKind != JsonValueKind.Object) throw new InputException($"{where}: expected an object with tensor, row, col");
                string? Str(params string[] keys) => keys.Select(k => e.TryGetProperty(k, out var v) ? v : default)
                    .Where(v => v.ValueKind != JsonValueKind.Undefined && v.ValueKind != JsonValueKind.Null)
                    .Select(v => v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText()).FirstOrDefault();
                string tensor = Str("tensor", "parameter", "name") ?? throw new InputException($"{where}: no 'tensor' (or 'parameter')");
                long r; long? c;
                if (e.TryGetProperty("indices", out var idx))
                    (r, c) = idx.ValueKind == JsonValueKind.Array ? ParseIndices(string.Join(",", idx.EnumerateArray().Select(x => x.GetRawText())), where) : ParseIndices(idx.ToString(), where);
                else
                    (r, c) = (Integer(Str("row") ?? throw new InputException($"{where}: no 'row' (or 'indices')"), "row", where), Str("col", "column") is string cs ? Integer(cs, "col", where) : null);
                targets.Add(new WeightTarget(WithLayer(tensor, Str("layer") ?? "", where), r, c, Str("label"), Str("source"), where));
            }
            return targets;
        }
    }

    /// <summary>"(r, c)", "[r, c]", "r, c", "(i,)" or "i".</summary>
    private static (long Row, long? Col) ParseIndices(string s, string where)
    {
        var parts = s.Trim().Trim('(', ')', '[', ']').Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length == 2 && parts[1].Length == 0) parts = [parts[0]];
        if (parts.Length is < 1 or > 2) throw new InputException($"{where}: indices '{s}' is not (row, col)");
        return (Integer(parts[0], "row", where), parts.Length == 2 ? Integer(parts[1], "col", where) : null);
    }

    private static long Integer(string s, string what, string where) =>
        long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v
            : throw new InputException($"{where}: {what} '{s}' is not an integer");

    /// <summary>A per-layer name ("mlp.down_proj" with layer 1) becomes "model.layers.1.mlp.down_proj".</summary>
    private static string WithLayer(string tensor, string layer, string where)
    {
        if (tensor.Length == 0) throw new InputException($"{where}: empty tensor name");
        if (layer.Length == 0 || tensor.Contains("layers.", StringComparison.Ordinal)) return tensor;
        return $"layers.{Integer(layer, "layer", where)}.{tensor}";
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;
}
