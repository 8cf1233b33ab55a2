using System.Text;
using Cwa.Core.Data;

namespace Cwa.Core.Reporting;

/// <summary>
/// `--save-tokens`: one JSON line per calibration sequence, {"batch": b, "tokens": [...]} without padding, in the
/// order the gradient pass used them, so another implementation can recompute G = sum over batches of the
/// gradient of each batch's mean next-token loss exactly.
/// </summary>
public static class CalibrationTokensFile
{
    public const string Name = "calibration_tokens.jsonl";

    public static void Write(string path, IReadOnlyList<Batch> batches)
    {
        var sb = new StringBuilder();
        for (int b = 0; b < batches.Count; b++)
            for (int r = 0; r < batches[b].BatchSize; r++)
            {
                sb.Append("{\"batch\": ").Append(b).Append(", \"tokens\": [");
                for (int t = 0; t < batches[b].Lengths[r]; t++)
                {
                    if (t > 0) sb.Append(", ");
                    sb.Append(batches[b].Token(r, t));
                }
                sb.Append("]}\n");
            }
        AtomicFile.WriteAllText(path, sb.ToString());
    }

    public static List<(int Batch, int[] Tokens)> Read(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l =>
        {
            using var doc = System.Text.Json.JsonDocument.Parse(l);
            return (doc.RootElement.GetProperty("batch").GetInt32(), doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        }).ToList();
}
