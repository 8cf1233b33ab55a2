using System.Globalization;
using System.Net;
using System.Text;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Reporting;

/// <summary>What report.html shows; sections with no data are left out.</summary>
public sealed record HtmlReportModel
{
    public required string Title { get; init; }
    public required IReadOnlyList<(string Label, string Value)> Summary { get; init; }
    public required IReadOnlyList<RankedWeight> TopWeights { get; init; }
    public required IReadOnlyList<TensorStats> Stats { get; init; }
    public IReadOnlyList<SuperWeightLayer> SuperWeights { get; init; } = [];
    public IReadOnlyList<Concentration> Concentration { get; init; } = [];
    public SensitivityMass? Mass { get; init; }
    public IReadOnlyList<(string Label, string Value)> Perturbation { get; init; } = [];
    public IReadOnlyList<(string Label, string Value)> Stability { get; init; } = [];
    public IReadOnlyList<(string Label, string Value)> KnownWeights { get; init; } = [];
    public IReadOnlyList<(string Label, string Value)> Timings { get; init; } = [];
    /// <summary>PNG files to embed, with captions.</summary>
    public IReadOnlyList<(string PngPath, string Caption)> Plots { get; init; } = [];
}

/// <summary>One self-contained page: inline CSS, plots embedded as data URIs, every text HTML-escaped.</summary>
public static class HtmlReport
{
    public static void Write(string path, HtmlReportModel m)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(m.Title)).Append("</title><style>")
          .Append("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222}h1{font-size:1.6em}")
          .Append("table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
          .Append("th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}")
          .Append("figcaption{color:#555;font-size:.9em}.scroll{max-height:480px;overflow:auto}</style></head><body>");
        sb.Append("<h1>").Append(E(m.Title)).Append("</h1>");
        sb.Append("<section id=\"summary\"><h2>Summary</h2>");
        KeyValues(sb, m.Summary);
        sb.Append("</section>");
        if (m.Perturbation.Count > 0) { sb.Append("<section id=\"perturbation\"><h2>Perturbation and controls</h2>"); KeyValues(sb, m.Perturbation); sb.Append("</section>"); }
        if (m.Stability.Count > 0) { sb.Append("<section id=\"stability\"><h2>Stability</h2>"); KeyValues(sb, m.Stability); sb.Append("</section>"); }
        if (m.KnownWeights.Count > 0) { sb.Append("<section id=\"known-weights\"><h2>Known critical weights</h2>"); KeyValues(sb, m.KnownWeights); sb.Append("</section>"); }
        sb.Append("<section id=\"plots\"><h2>Plots</h2>");
        foreach (var (png, caption) in m.Plots.Where(p => File.Exists(p.PngPath)))
            sb.Append("<figure class=\"plot\"><img alt=\"").Append(E(caption)).Append("\" src=\"data:image/png;base64,")
              .Append(Convert.ToBase64String(File.ReadAllBytes(png))).Append("\"><figcaption>").Append(E(caption)).Append("</figcaption></figure>");
        sb.Append("</section>");
        sb.Append("<section id=\"top-weights\"><h2>Top weights</h2><p>The ").Append(Math.Min(50, m.TopWeights.Count)).Append(" highest of the ")
          .Append(m.TopWeights.Count.ToString("N0", CultureInfo.InvariantCulture)).Append(" selected weights; all of them are in <a href=\"top_weights.csv\">top_weights.csv</a>.</p>");
        sb.Append("<div class=\"scroll\"><table><tr><th>parameter</th><th>rank</th><th>(row, col)</th><th>score</th><th>weight</th><th>gradient</th></tr>");
        int rank = 1;
        foreach (var w in m.TopWeights.OrderByDescending(w => w.Score).Take(50))
            sb.Append("<tr><td>").Append(E(w.Parameter)).Append("</td><td>").Append(rank++).Append("</td><td>").Append(E(w.Indices))
              .Append("</td><td>").Append(G(w.Score)).Append("</td><td>").Append(G(w.Weight)).Append("</td><td>").Append(G(w.Gradient)).Append("</td></tr>");
        sb.Append("</table></div></section>");
        if (m.SuperWeights.Count > 0)
        {
            sb.Append("<section id=\"super-weights\"><h2>Super-weight candidates (mlp.down_proj)</h2><table><tr><th>layer</th><th>max |input|</th><th>input channel</th><th>max |output|</th><th>output channel</th><th>spike</th><th>(row, col)</th><th>weight</th></tr>");
            foreach (var s in m.SuperWeights)
                sb.Append("<tr><td>").Append(s.Layer).Append("</td><td>").Append(G(s.MaxAbsInput)).Append("</td><td>").Append(s.InputChannel)
                  .Append("</td><td>").Append(G(s.MaxAbsOutput)).Append("</td><td>").Append(s.OutputChannel).Append("</td><td>").Append(s.IsSpike ? "yes" : "")
                  .Append("</td><td>(").Append(s.Row).Append(", ").Append(s.Col).Append(")</td><td>").Append(G(s.Weight)).Append("</td></tr>");
            sb.Append("</table></section>");
        }
        sb.Append("<section id=\"stats\"><h2>Per-tensor statistics</h2><div class=\"scroll\"><table><tr><th>tensor</th><th>weights</th><th>mean</th><th>std</th><th>q25</th><th>median</th><th>q75</th><th>p99</th><th>p99.9</th><th>max</th><th>skewness</th><th>excess kurtosis</th><th>zero share</th></tr>");
        foreach (var s in m.Stats)
            sb.Append("<tr><td>").Append(E(s.Name)).Append("</td><td>").Append(s.NumWeights.ToString("N0", CultureInfo.InvariantCulture)).Append("</td><td>").Append(G(s.Mean))
              .Append("</td><td>").Append(G(s.Std)).Append("</td><td>").Append(G(s.Q25)).Append("</td><td>").Append(G(s.P50)).Append("</td><td>").Append(G(s.Q75))
              .Append("</td><td>").Append(G(s.P99)).Append("</td><td>").Append(G(s.P999)).Append("</td><td>").Append(G(s.Max))
              .Append("</td><td>").Append(G(s.Skewness)).Append("</td><td>").Append(G(s.ExcessKurtosis)).Append("</td><td>").Append(G(s.ZeroShare)).Append("</td></tr>");
        sb.Append("</table></div></section>");
        if (m.Mass is { } mass)
        {
            sb.Append("<section id=\"mass\"><h2>Sensitivity mass: share of the total score</h2><p>Ranked; density is the score share over the weight share (above 1: more sensitive per weight than average). All tensors are in sensitivity_mass.json.</p>");
            void MassTable(string title, IEnumerable<MassShare> rows)
            {
                sb.Append("<h3>").Append(E(title)).Append("</h3><div class=\"scroll\"><table><tr><th>").Append(E(title)).Append("</th><th>weights</th><th>score share</th><th>weight share</th><th>density</th></tr>");
                foreach (var r in rows)
                    sb.Append("<tr><td>").Append(E(r.Key)).Append("</td><td>").Append(r.NumWeights.ToString("N0", CultureInfo.InvariantCulture)).Append("</td><td>")
                      .Append(r.Share.ToString("P2", CultureInfo.InvariantCulture)).Append("</td><td>").Append(r.WeightShare.ToString("P2", CultureInfo.InvariantCulture))
                      .Append("</td><td>").Append(G(r.Density)).Append("</td></tr>");
                sb.Append("</table></div>");
            }
            MassTable("tensor (top 25)", mass.Tensors.Take(25));
            MassTable("block", mass.Blocks);
            MassTable("component", mass.Components);
            sb.Append("</section>");
        }
        if (m.Concentration.Count > 0)
        {
            // The tensors whose top 0.1% sit most in one column first: where super-weight-like channels are.
            sb.Append("<section id=\"concentration\"><h2>Where the top 0.1% of each tensor sit</h2><div class=\"scroll\"><table><tr><th>tensor</th><th>weights in top 0.1%</th>")
              .Append("<th>top column (count)</th><th>largest column share</th><th>column HHI (uniform)</th><th>top row (count)</th><th>largest row share</th><th>row HHI (uniform)</th></tr>");
            foreach (var c in m.Concentration.OrderByDescending(c => c.MaxColumnShare).ThenBy(c => c.Tensor, StringComparer.Ordinal))
                sb.Append("<tr><td>").Append(E(c.Tensor)).Append("</td><td>").Append(c.TopCount).Append("</td><td>").Append(c.TopColumnsByCount[0].Index).Append(" (").Append(c.TopColumnsByCount[0].Count)
                  .Append(")</td><td>").Append(G(c.MaxColumnShare)).Append("</td><td>").Append(G(c.ColumnHhi)).Append(" (").Append(G(c.UniformColumnHhi)).Append(")</td><td>")
                  .Append(c.TopRowsByCount[0].Index).Append(" (").Append(c.TopRowsByCount[0].Count).Append(")</td><td>").Append(G(c.MaxRowShare)).Append("</td><td>")
                  .Append(G(c.RowHhi)).Append(" (").Append(G(c.UniformRowHhi)).Append(")</td></tr>");
            sb.Append("</table></div></section>");
        }
        if (m.Timings.Count > 0) { sb.Append("<section id=\"timings\"><h2>Timings</h2>"); KeyValues(sb, m.Timings); sb.Append("</section>"); }
        sb.Append("</body></html>");
        AtomicFile.WriteAllText(path, sb.ToString());
    }

    private static void KeyValues(StringBuilder sb, IEnumerable<(string Label, string Value)> rows)
    {
        sb.Append("<table>");
        foreach (var (k, v) in rows) sb.Append("<tr><th>").Append(E(k)).Append("</th><td>").Append(E(v)).Append("</td></tr>");
        sb.Append("</table>");
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string G(double v) => v.ToString("G5", CultureInfo.InvariantCulture);
}
