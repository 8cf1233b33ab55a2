using System.Globalization;
using Cwa.Core.Pipeline;
using Spectre.Console;

namespace Cwa.Cli;

/// <summary>The short table printed at the end of a run: loss, top weights, timings, where the files are.</summary>
internal static class SummaryPrinter
{
    public static void Print(AnalysisSummary s, TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = ReferenceEquals(writer, Console.Out) ? AnsiSupport.Detect : AnsiSupport.No,
        });
        // In a log (no terminal) nothing knows the width: wide enough that tensor names do not wrap.
        if (!ReferenceEquals(writer, Console.Out) || Console.IsOutputRedirected) console.Profile.Width = 160;
        var head = new Table().Border(TableBorder.Rounded).AddColumn("Run").AddColumn("Value");
        head.AddRow("model", Markup.Escape(s.ModelName));
        head.AddRow("metric / mode / k", $"{s.Metric} / {s.Mode} / {s.TopK}");
        head.AddRow("calibration", s.NumTexts > 0 ? $"{s.NumTexts} sequences, {s.NumTokens} target tokens" : "none needed (|W| reads no data)");
        foreach (var r in s.Results)
            head.AddRow(Markup.Escape(r.Label), F(r.Value));
        console.Write(head);

        var top = new Table().Border(TableBorder.Rounded).Title("Top weights")
            .AddColumn("#").AddColumn("parameter").AddColumn("(row, col)").AddColumn("score").AddColumn("weight");
        int rank = 1;
        foreach (var w in s.TopWeights)
            top.AddRow((rank++).ToString(CultureInfo.InvariantCulture), Markup.Escape(w.Parameter), w.Indices, F(w.Score), F(w.Weight));
        console.Write(top);

        console.WriteLine("timings: " + string.Join(", ", s.Timings.Select(t => $"{t.Phase} {t.Seconds:F2}s")));
        console.WriteLine($"{s.OutputFiles.Count} files written to {s.OutDir}");
    }

    private static string F(double v) => Divergence.Show(v);
}
