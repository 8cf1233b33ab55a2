using System.CommandLine;
using Cwa.Core.Pipeline;
using Spectre.Console;

namespace Cwa.Cli;

/// <summary>
/// Chooses how progress is shown: Spectre bars on an interactive terminal, one line per phase when output
/// is redirected (CI logs stay readable), nothing with --quiet.
/// </summary>
internal static class ConsoleProgress
{
    public static T Run<T>(ParseResult parse, TextWriter stdout, Func<IProgressSink, T> work)
    {
        if (parse.GetValue(CommandRunner.Quiet))
            return work(new Cancelling(NullProgress.Instance));
        bool interactive = ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!interactive)
            return work(new Cancelling(new LineProgress(stdout)));
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .Start(ctx => result = work(new Cancelling(new SpectreSink(ctx))));
        return result;
    }

    /// <summary>Every progress step is a point where SIGINT/SIGTERM stop the work (an OperationCanceledException unwinds it).</summary>
    private sealed class Cancelling(IProgressSink inner) : IProgressSink
    {
        public IPhaseProgress Start(string phase, double total)
        {
            Interrupts.Token.ThrowIfCancellationRequested();
            return new Phase(inner.Start(phase, total));
        }

        public void Info(string message) => inner.Info(message);

        private sealed class Phase(IPhaseProgress p) : IPhaseProgress
        {
            public void Advance(double steps = 1)
            {
                Interrupts.Token.ThrowIfCancellationRequested();
                p.Advance(steps);
            }

            public void Describe(string text) => p.Describe(text);
            public void Dispose() => p.Dispose();
        }
    }

    private sealed class SpectreSink(ProgressContext ctx) : IProgressSink
    {
        public IPhaseProgress Start(string phase, double total) => new Phase(ctx.AddTask(Markup.Escape(phase), maxValue: Math.Max(total, 1e-9)));
        public void Info(string message) => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(message)}[/]");

        private sealed class Phase(ProgressTask task) : IPhaseProgress
        {
            private readonly string _name = task.Description;
            public void Advance(double steps = 1) => task.Increment(steps);
            public void Describe(string text) => task.Description = $"{_name} [grey]{Markup.Escape(text)}[/]";
            public void Dispose() { task.Value = task.MaxValue; task.StopTask(); }
        }
    }

    /// <summary>
    /// Progress in a log: a line when a phase ends, and while a long phase runs a line every 10 s (after the first 5 s)
    /// with how far it is, the time spent and an estimate of what is left, so a redirected 20-minute run is never silent.
    /// </summary>
    private sealed class LineProgress(TextWriter w) : IProgressSink
    {
        public IPhaseProgress Start(string phase, double total) => new Phase(w, phase, total);
        public void Info(string message) => w.WriteLine(message);

        private sealed class Phase(TextWriter w, string name, double total) : IPhaseProgress
        {
            private readonly System.Diagnostics.Stopwatch _sw = System.Diagnostics.Stopwatch.StartNew();
            private double _done, _lastLine = -5;

            public void Advance(double steps = 1)
            {
                _done += steps;
                double t = _sw.Elapsed.TotalSeconds;
                if (t < 5 || t - _lastLine < 10 || total <= 0) return;
                _lastLine = t;
                double fraction = Math.Min(1, _done / total);
                string left = fraction > 0 ? $", about {t / fraction - t:F0} s left" : "";
                w.WriteLine($"{name}: {100 * fraction:F0}% after {t:F0} s{left}");
            }

            public void Describe(string text) { }
            public void Dispose() => w.WriteLine($"{name}: done in {_sw.Elapsed.TotalSeconds:F2} s");
        }
    }
}
