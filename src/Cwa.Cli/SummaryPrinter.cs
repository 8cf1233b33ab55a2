using System.Globalization;
using Cwa.Core.Pipeline;
using Spectre.Console;

namespace Cwa.Cli;

/// <summary>The short table printed at the end of a run: loss, top weights, timings, where the files are.</summary>
internal static class SummaryPrinter
{
    private static IAnsiConsole ConsoleFor(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = ReferenceEquals(writer, Console.Out) ? AnsiSupport.Detect : AnsiSupport.No,
        });
        // In a log (no terminal) nothing knows the width: wide enough that tensor names do not wrap.
        if (!ReferenceEquals(writer, Console.Out) || Console.IsOutputRedirected) console.Profile.Width = 160;
        return console;
    }

    public static void Print(AnalysisSummary s, TextWriter writer)
    {
        var console = ConsoleFor(writer);
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

    /// <summary>`cwa perturb`: the baseline, then one row per measured set (the 25 largest changes with --each).</summary>
    public static void Print(TargetPerturbationReport p, string outDir, TextWriter writer)
    {
        var console = ConsoleFor(writer);
        console.WriteLine($"baseline: perplexity {F(p.Baseline.Perplexity)}, nll {F(p.Baseline.Nll)}, top-1 accuracy {p.Baseline.Accuracy:P2} over {p.Baseline.Tokens} tokens");
        const int Shown = 25;
        var rows = p.Each ? p.Entries.OrderByDescending(e => double.IsNaN(e.DeltaPerplexity) ? double.PositiveInfinity : e.DeltaPerplexity).Take(Shown) : p.Entries;
        var table = new Table().Border(TableBorder.Rounded).Title($"{p.Kind}{(p.Each ? $", each target alone ({Math.Min(Shown, p.Entries.Count)} of {p.Entries.Count}, largest change first)" : "")}")
            .AddColumn("target").AddColumn("weights").AddColumn("weight before → after").AddColumn("perplexity").AddColumn("Δ perplexity").AddColumn("random_k Δ (95% CI)");
        foreach (var e in rows)
            table.AddRow(Markup.Escape(e.Target), e.WeightsTouched.ToString(CultureInfo.InvariantCulture),
                e.Weight is float w ? $"{F(w)} → {(e.PerturbedWeight is float a ? F(a) : "")}" : "",
                F(e.Perplexity), F(e.DeltaPerplexity),
                e.RandomK is { } rk ? (rk.Draws < 2 ? F(rk.MeanDeltaPerplexity) : $"{F(rk.MeanDeltaPerplexity)} ({rk.Ci95Low:G3} .. {rk.Ci95High:G3})") : "");
        console.Write(table);
        console.WriteLine($"written to {outDir}");
    }

    private static string F(double v) => Divergence.Show(v);
}
