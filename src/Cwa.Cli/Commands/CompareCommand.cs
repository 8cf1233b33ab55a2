using System.CommandLine;
using Cwa.Core;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa compare RUN_A RUN_B ...`: overlap of the true top-k (by score) across runs, globally and per tensor.</summary>
internal static class CompareCommand
{
    private static readonly Argument<string[]> Runs = new("runs") { Description = "Two or more analyze output folders (or top_weights.csv files).", Arity = ArgumentArity.OneOrMore };
    private static readonly Option<int?> TopK = new("--topk", "-k") { Description = "Compare the top-k by score (default: the smallest number of rows any run has)." };
    private static readonly Option<string> Out = new("--out", "-o", "--out-dir") { Description = "Folder for compare.json and compare_overlap.png (--out-dir, as analyze and merge name it, works too).", DefaultValueFactory = _ => "compare" };

    public static Command Create()
    {
        var cmd = new Command("compare", "Compare the critical weights of several runs (metrics, seeds, models): Jaccard and overlap of the top-k by score, globally and per tensor.");
        cmd.Add(Runs);
        foreach (var o in new Option[] { TopK, Out, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var runs = parse.GetValue(Runs)!;
            if (runs.Length < 2) throw new InputException("compare needs at least two runs");
            var result = RunComparison.Run(runs, parse.GetValue(TopK), parse.GetValue(Out)!);
            foreach (var w in result.Warnings) parse.InvocationConfiguration.Error.WriteLine($"warning: {w}");
            foreach (var p in result.Pairs)
                stdout.WriteLine($"{p.A}  vs  {p.B}: Jaccard {p.Jaccard:F3}, overlap {p.Overlap:F3} (top {result.TopK}); mean per-tensor Jaccard {p.MeanPerTensorJaccard:F3}");
            stdout.WriteLine($"written {Path.Combine(parse.GetValue(Out)!, "compare.json")}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
