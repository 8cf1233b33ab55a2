using System.CommandLine;
using Cwa.Core;

namespace Cwa.Cli;

/// <summary>Runs a command body and turns failures into one line on stderr plus the documented exit code.</summary>
internal static class CommandRunner
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces for failures.", Recursive = true };
    public static readonly Option<bool> Quiet = new("--quiet", "-q") { Description = "No progress bars or summary tables (for scripts).", Recursive = true };

    public static void SetAction(Command command, Func<ParseResult, TextWriter, int> body)
    {
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            bool verbose = parse.GetValue(Verbose);
            try
            {
                return body(parse, stdout);
            }
            catch (CwaException e)
            {
                stderr.WriteLine($"error: {OneLine(e.Message)}");
                if (verbose) stderr.WriteLine(e);
                return e.ExitCode;
            }
            catch (OperationCanceledException) when (Interrupts.Received is { } signal)
            {
                stderr.WriteLine($"error: cancelled by {signal}; the out dir keeps its previous contents (a gradient checkpoint, if any, is kept for --resume)");
                return Interrupts.ExitCode;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"error: {OneLine(e.Message)}");
                if (verbose) stderr.WriteLine(e);
                return ExitCodes.RuntimeFailure;
            }
            catch (Exception e)
            {
                stderr.WriteLine($"error: unexpected {e.GetType().Name}: {OneLine(e.Message)} (run with --verbose for details)");
                if (verbose) stderr.WriteLine(e);
                return ExitCodes.RuntimeFailure;
            }
        });
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
