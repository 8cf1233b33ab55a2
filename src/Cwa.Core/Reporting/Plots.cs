using System.Globalization;
using Cwa.Core.Pipeline;
using Cwa.Core.Sensitivity;
using ScottPlot;

namespace Cwa.Core.Reporting;

/// <summary>
/// The run's figures (PNG with an SVG beside it). Scores span many decades, so bar heights and colours are
/// log10 values with tick labels written as powers of ten; ScottPlot has no native log axis.
/// </summary>
public static class Plots
{
    private const int Width = 1200, Height = 700;

    /// <summary>Components in the order they occur inside a block, then the tensors outside blocks.</summary>
    public static readonly string[] ComponentOrder =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "embed_tokens", "lm_head"];

    public static string ShortName(string component) => component.Replace("self_attn.", "").Replace("mlp.", "");

    public static IReadOnlyList<string> LayerComparison(string path, string title, IReadOnlyList<TensorScoreSummary> tensors)
    {
        var plt = NewPlot(title, "transformer block", "mean score per tensor (log10)");
        var components = ComponentOrder.Where(c => tensors.Any(t => t.Component == c)).ToList();
        var blocks = tensors.Select(t => t.Block).Distinct().Order().ToList();
        double groupWidth = 0.8, barWidth = groupWidth / Math.Max(1, components.Count);
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<Bar>();
        double floor = Floor(tensors.Select(t => t.Mean));
        for (int ci = 0; ci < components.Count; ci++)
        {
            var color = palette.GetColor(ci);
            foreach (var t in tensors.Where(t => t.Component == components[ci]))
            {
                double x = Slot(blocks, t.Block) - groupWidth / 2 + barWidth * (ci + 0.5);
                bars.Add(new Bar { Position = x, Value = Log(t.Mean, floor), ValueBase = floor, FillColor = color, Size = barWidth * 0.95, LineWidth = 0 });
            }
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = ShortName(components[ci]), FillColor = color });
        }
        plt.Add.Bars(bars);
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            blocks.Select(b => (double)Slot(blocks, b)).ToArray(), blocks.Select(b => b < 0 ? "other (-1)" : b.ToString(CultureInfo.InvariantCulture)).ToArray());
        LogTicks(plt.Axes.Left, bars.Count == 0 ? 0 : bars.Max(b => b.Value) - floor);
        plt.ShowLegend(Edge.Right);
        plt.Axes.Margins(bottom: 0);
        // Groups only partly filled (e.g. "other" has just embed/lm_head) would otherwise be cropped by autoscaling.
        plt.Axes.SetLimitsX(-0.5, blocks.Count - 0.5);
        return Save(plt, path);
    }

    public static IReadOnlyList<string> Distribution(string path, string title, LogHistogram h, TensorStats overall, QuantileAccuracy quantiles = QuantileAccuracy.BinEdge)
    {
        var plt = NewPlot(title, "score (log10 bins)", "weights per bin (log10)");
        var bars = new List<Bar>();
        for (int i = 0; i < h.Counts.Length; i++)
        {
            if (h.Counts[i] == 0) continue;
            double lo = Math.Log10(h.Edges[i]), hi = Math.Log10(h.Edges[i + 1]);
            bars.Add(new Bar { Position = (lo + hi) / 2, Value = Math.Log10(h.Counts[i]) + 1, ValueBase = 0, Size = (hi - lo) * 0.95, FillColor = Colors.SteelBlue, LineWidth = 0 });
        }
        plt.Add.Bars(bars);
        LogTicks(plt.Axes.Bottom);
        // Bars start at log10(count) + 1 so single-count bins stay visible; labels undo the offset.
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = v => Pow10(v - 1), IntegerTicksOnly = true };
        var text = string.Join("\n",
            $"weights: {overall.NumWeights:N0}",
            $"zeros: {h.Zeros:N0}",
            $"mean: {overall.Mean:G4}",
            Quantile("median", overall.P50, quantiles),
            Quantile("p99", overall.P99, quantiles),
            $"max: {overall.Max:G4}");
        var note = plt.Add.Annotation(text, Alignment.UpperRight);
        note.LabelFontSize = 15;
        note.LabelFontName = "DejaVu Sans Mono";
        plt.Axes.Margins(bottom: 0);
        // Headroom of two decades above the tallest bar, so the summary box sits above the data instead of on it.
        if (bars.Count > 0) plt.Axes.SetLimitsY(0, bars.Max(b => b.Value) + 2.2);
        return Save(plt, path);
    }

    /// <summary>A model-wide quantile for the summary box, saying how it was found unless exactly.</summary>
    private static string Quantile(string name, double value, QuantileAccuracy accuracy) => accuracy switch
    {
        QuantileAccuracy.Exact => $"{name}: {value:G4}",
        QuantileAccuracy.Bucket => $"{name}: {value:G4} (±0.4%)",
        _ => $"{name}: ≤ {value:G3} (bin edge)",
    };

    public static IReadOnlyList<string> Heatmap(string path, string title, string[] rowLabels, string[] colLabels, double[,] values, string colorbarLabel, bool logScale, bool annotate = false, bool unitRange = false)
    {
        var plt = NewPlot(title, "", "");
        int rows = values.GetLength(0), cols = values.GetLength(1);
        var data = new double[rows, cols];
        double floor = logScale ? Floor(values.Cast<double>()) : 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                data[r, c] = double.IsNaN(values[r, c]) ? double.NaN : logScale ? Log(values[r, c], floor) : values[r, c];
        var hm = plt.Add.Heatmap(data);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        hm.FlipVertically = true;
        // Similarities (Jaccard) are drawn on a fixed 0..1 scale, so a pale cell means low agreement in every plot.
        if (unitRange) hm.ManualRange = new ScottPlot.Range(0, 1);
        var bar = plt.Add.ColorBar(hm);
        bar.Label = colorbarLabel;
        bar.LabelStyle.FontSize = 15;
        if (logScale)
            bar.Axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = Pow10, IntegerTicksOnly = true };
        else if (unitRange)
            bar.Axis.TickGenerator = new ScottPlot.TickGenerators.NumericManual([0, 0.25, 0.5, 0.75, 1], ["0", "0.25", "0.5", "0.75", "1"]);
        bar.Axis.TickLabelStyle.FontSize = 13;
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(Enumerable.Range(0, cols).Select(i => (double)i).ToArray(), colLabels);
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(Enumerable.Range(0, rows).Select(i => (double)i).ToArray(), rowLabels);
        plt.Axes.Bottom.TickLabelStyle.FontSize = cols > 8 ? 12 : 14;
        if (annotate && rows * cols <= 400)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                {
                    var t = plt.Add.Text(values[r, c].ToString("0.00", CultureInfo.InvariantCulture), c, r);
                    t.LabelAlignment = Alignment.MiddleCenter;
                    t.LabelFontSize = 14;
                    t.LabelFontColor = Colors.White;
                }
        return Save(plt, path);
    }

    public static IReadOnlyList<string> PerturbationEffects(string path, string title, IReadOnlyList<PerturbationEffect> effects)
    {
        var plt = NewPlot(title, "", "Δ perplexity on held-out texts");
        var palette = new ScottPlot.Palettes.Category10();
        // Asymmetric 95% whiskers, and every bar labelled with its value: a control near zero has no visible bar.
        var bars = effects.Select((e, i) => new Bar
        {
            Position = i, Value = e.Mean, FillColor = palette.GetColor(i), Size = 0.6, LineWidth = 0,
            Label = e.Mean.ToString("+0.###;-0.###;0", CultureInfo.InvariantCulture),
        }).ToList();
        var plot = plt.Add.Bars(bars);
        plot.ValueLabelStyle.FontSize = 14;
        plt.Add.HorizontalLine(0, 1, Colors.Gray);
        for (int i = 0; i < effects.Count; i++)
        {
            var e = effects[i];
            if (!(e.High > e.Low) || !double.IsFinite(e.Low) || !double.IsFinite(e.High)) continue;
            foreach (var (x1, y1, x2, y2) in new[] { (i, e.Low, i, e.High), (i - 0.1, e.Low, i + 0.1, e.Low), (i - 0.1, e.High, i + 0.1, e.High) })
            {
                var line = plt.Add.Line(x1, y1, x2, y2);
                line.LineWidth = 2;
                line.LineColor = Colors.Black;
            }
        }
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, effects.Count).Select(i => (double)i).ToArray(), effects.Select(e => e.Label).ToArray());
        return Save(plt, path);
    }

    public static IReadOnlyList<string> DoseResponse(string path, string title, IReadOnlyList<DoseResponseSeries> series, IReadOnlyDictionary<int, long>? totals = null)
    {
        var plt = NewPlot(title, totals is { Count: > 0 } ? "k per tensor (weights perturbed in total)" : "k per tensor (log scale)", "Δ perplexity on held-out texts");
        foreach (var s in series.Where(s => s.Low != null && s.High != null))
        {
            var band = plt.Add.FillY(s.K.Select(k => Math.Log10(k)).ToArray(), s.Low!, s.High!);
            band.FillColor = band.FillColor.WithAlpha(0.2);
            band.LineWidth = 0;
        }
        foreach (var s in series) KLine(plt, s, 8);
        // Ticks at the swept k, labelled "k (total weights)", when the totals are known; else 1, 10, 100 ...
        plt.Axes.Bottom.TickGenerator = totals is { Count: > 0 }
            ? new ScottPlot.TickGenerators.NumericManual(totals.Keys.Order().Select(k => Math.Log10(k)).ToArray(),
                totals.Keys.Order().Select(k => $"{k}\n({totals[k]:N0})").ToArray())
            : KTicks();
        plt.ShowLegend(Alignment.UpperLeft);
        return Save(plt, path);
    }

    /// <summary>Jaccard of the top-k sets against k (log axis), one line per mode and comparison; the y axis spans 0..1.</summary>
    public static IReadOnlyList<string> StabilityAtK(string path, string title, IReadOnlyList<DoseResponseSeries> series)
    {
        var plt = NewPlot(title, "k per tensor / block / model (log scale)", "Jaccard of the top-k sets");
        foreach (var s in series)
            if (s.Label.Contains("halves", StringComparison.Ordinal)) KLine(plt, s, 6).LinePattern = LinePattern.Dashed;
            else KLine(plt, s, 6);
        plt.Axes.SetLimitsY(0, 1.05);
        plt.Axes.Bottom.TickGenerator = KTicks();
        plt.ShowLegend(Alignment.UpperRight);
        return Save(plt, path);
    }

    /// <summary>One series against k on a log10 axis.</summary>
    private static ScottPlot.Plottables.Scatter KLine(Plot plt, DoseResponseSeries s, float markerSize)
    {
        var sc = plt.Add.Scatter(s.K.Select(k => Math.Log10(k)).ToArray(), s.Delta);
        sc.LegendText = s.Label;
        sc.LineWidth = 2;
        sc.MarkerSize = markerSize;
        return sc;
    }

    private static ScottPlot.TickGenerators.NumericAutomatic KTicks() => new() { LabelFormatter = KTick, IntegerTicksOnly = true };

    /// <summary>Concentration curve: joint effect of the top-1..N against the running sum of single-weight effects.</summary>
    public static IReadOnlyList<string> Ablation(string path, string title, int[] ranks, double[] joint, double[] sumAlone, double[] alone)
    {
        var plt = NewPlot(title, "n (top-n weights of the global ranking)", "Δ perplexity on held-out texts");
        double[] x = ranks.Select(r => (double)r).ToArray();
        foreach (var (label, y, marker) in new[] { ("top-1..n jointly", joint, 8f), ("sum of the n alone", sumAlone, 6f), ("weight n alone", alone, 5f) })
        {
            var sc = plt.Add.Scatter(x, y.Select(v => double.IsFinite(v) ? v : double.NaN).ToArray());
            sc.LegendText = label;
            sc.LineWidth = label.StartsWith("weight", StringComparison.Ordinal) ? 0 : 2;
            sc.MarkerSize = marker;
        }
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plt.ShowLegend(Alignment.UpperLeft);
        return Save(plt, path);
    }

    private static Plot NewPlot(string title, string x, string y)
    {
        var plt = new Plot();
        plt.Title(title);
        plt.Axes.Title.Label.FontSize = 20;
        plt.XLabel(x);
        plt.YLabel(y);
        plt.Axes.Bottom.Label.FontSize = 16;
        plt.Axes.Left.Label.FontSize = 16;
        plt.Axes.Bottom.TickLabelStyle.FontSize = 13;
        plt.Axes.Left.TickLabelStyle.FontSize = 13;
        plt.Legend.FontSize = 14;
        return plt;
    }

    private static IReadOnlyList<string> Save(Plot plt, string pngPath)
    {
        string svg = Path.ChangeExtension(pngPath, ".svg");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(pngPath))!);
        AtomicFile.WriteAllBytes(pngPath, plt.GetImageBytes(Width, Height, ImageFormat.Png));
        AtomicFile.WriteAllText(svg, plt.GetSvgXml(Width, Height));
        return [pngPath, svg];
    }

    private static int Slot(List<int> blocks, int block) => blocks.IndexOf(block);

    private static double Floor(IEnumerable<double> values)
    {
        var positive = values.Where(v => v > 0 && double.IsFinite(v)).ToList();
        return positive.Count == 0 ? 0 : Math.Floor(Math.Log10(positive.Min())) - 0.5;
    }

    private static double Log(double v, double floor) => v > 0 ? Math.Log10(v) : floor;

    /// <summary>A k axis in log10: 1, 10, 100, 1000 rather than exponents.</summary>
    private static string KTick(double exponent) =>
        Math.Abs(exponent - Math.Round(exponent)) < 1e-9 && exponent is >= 0 and <= 9 ? Math.Pow(10, Math.Round(exponent)).ToString("0", System.Globalization.CultureInfo.InvariantCulture) : "";

    private static string Pow10(double exponent) =>
        Math.Abs(exponent - Math.Round(exponent)) < 1e-9 ? $"1e{Math.Round(exponent):0}" : "";

    /// <summary>
    /// Log10 axis labels. Over less than about two decades (e.g. act_outlier means, all near 0.1) powers of ten alone
    /// leave one or two labels, so 2x and 5x ticks are labelled as well.
    /// </summary>
    private static void LogTicks(ScottPlot.IAxis axis, double decades = double.PositiveInfinity)
    {
        if (decades >= 2.5)
        {
            axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = Pow10, IntegerTicksOnly = true };
            return;
        }
        var positions = new List<double>();
        var labels = new List<string>();
        for (int e = -30; e <= 30; e++)
            foreach (int m in new[] { 1, 2, 5 })
            {
                positions.Add(e + Math.Log10(m));
                labels.Add((m * Math.Pow(10, e)).ToString("G3", CultureInfo.InvariantCulture));
            }
        axis.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions.ToArray(), labels.ToArray());
    }
}
