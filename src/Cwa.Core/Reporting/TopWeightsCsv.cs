using System.Globalization;
using System.Text;
using Cwa.Core.Data;
using Cwa.Core.Ranking;

namespace Cwa.Core.Reporting;

/// <summary>
/// top_weights.csv: the Python project's columns first (parameter, indices, sensitivity_score, layer_group) so
/// existing notebooks still read it, then rank, block, component, row, col, weight, gradient. Floats use the
/// round-trip format so a reader recovers exactly the scores that were ranked.
/// </summary>
public static class TopWeightsCsv
{
    public const string Header = "parameter,indices,sensitivity_score,layer_group,rank,block,component,row,col,weight,gradient";

    public static void Write(string path, IEnumerable<RankedWeight> rows)
    {
        // Stable sort: equal scores keep the deterministic order the ranking produced.
        var ordered = rows.Select((r, i) => (r, i)).OrderByDescending(x => x.r.Score).ThenBy(x => x.i).Select(x => x.r);
        AtomicFile.Write(path, stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false));
            w.NewLine = "\n";
            w.WriteLine(Header);
            int rank = 1;
            foreach (var r in ordered)
            {
                w.Write(r.Parameter); w.Write(",\""); w.Write(r.Indices); w.Write("\",");
                w.Write(F(r.Score)); w.Write(','); w.Write(r.LayerGroup); w.Write(',');
                w.Write(rank++.ToString(CultureInfo.InvariantCulture)); w.Write(',');
                w.Write(r.Block.ToString(CultureInfo.InvariantCulture)); w.Write(','); w.Write(r.Component); w.Write(',');
                w.Write(r.Row.ToString(CultureInfo.InvariantCulture)); w.Write(','); w.Write(r.Col.ToString(CultureInfo.InvariantCulture)); w.Write(',');
                // Metrics without a gradient (magnitude, wanda, act_outlier) leave the column empty rather than write NaN.
                w.Write(F(r.Weight)); w.Write(','); w.WriteLine(float.IsNaN(r.Gradient) ? "" : F(r.Gradient));
            }
        });
    }

    private static string F(float v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static List<RankedWeight> Read(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: file not found");
        var rows = new List<RankedWeight>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (lineNo == 1)
            {
                if (!line.StartsWith("parameter,indices,sensitivity_score,layer_group", StringComparison.Ordinal))
                    throw new InputException($"{path}: not a top_weights.csv (its header is not the one cwa writes)");
                continue;
            }
            if (line.Length == 0) continue;
            rows.Add(Parse(line, path, lineNo));
        }
        return rows;
    }

    private static RankedWeight Parse(string line, string path, int lineNo)
    {
        var f = Csv.Split(line);
        if (f.Count < 4) throw new InputException($"{path}:{lineNo}: expected at least 4 columns, found {f.Count}");
        try
        {
            var idx = f[1].Trim('(', ')', ' ').Split(',', StringSplitOptions.TrimEntries);
            int row = int.Parse(idx[0], CultureInfo.InvariantCulture), col = idx.Length > 1 ? int.Parse(idx[1], CultureInfo.InvariantCulture) : 0;
            float score = float.Parse(f[2], CultureInfo.InvariantCulture);
            bool full = f.Count >= 11;
            return new RankedWeight(-1, f[0], -1, row, col, score,
                full ? float.Parse(f[9], CultureInfo.InvariantCulture) : float.NaN,
                full && f[10].Length > 0 ? float.Parse(f[10], CultureInfo.InvariantCulture) : float.NaN,
                full ? int.Parse(f[5], CultureInfo.InvariantCulture) : -1,
                full ? f[6] : "",
                f[3]);
        }
        catch (Exception e) when (e is FormatException or OverflowException or IndexOutOfRangeException)
        {
            throw new InputException($"{path}:{lineNo}: malformed row ({e.Message})");
        }
    }
}
