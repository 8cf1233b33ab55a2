using System.CommandLine;
using Cwa.Cli.Commands;

namespace Cwa.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Interrupts.Install();
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Entry point shared by the executable and the end-to-end tests.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = BuildRoot();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors)
                stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine("Run 'cwa --help' (or 'cwa <command> --help') for usage.");
            return ExitCodes.Usage;
        }
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

    internal static RootCommand BuildRoot()
    {
        var root = new RootCommand(
            "CriticalWeights (cwa): find the weights a language model cannot live without.\n" +
            "Loads a Hugging Face Llama-family checkpoint, runs calibration text through it, scores every weight,\n" +
            "ranks them, writes statistics, CSV, manifest and plots, and tests the ranking by perturbation.\n\n" +
            "Start with `cwa analyze` (built-in demo model and corpus, results in ./results), then\n" +
            "`cwa analyze --model DIR --perturb zero --controls random_k,bottom_k` on your own checkpoint.\n\n" +
            "Exit codes: 0 ok, 1 runtime failure, 2 usage error or bad input.");
        root.Add(AnalyzeCommand.Create());
        root.Add(EvalCommand.Create());
        root.Add(PerturbCommand.Create());
        root.Add(CompareCommand.Create());
        root.Add(ExportCommand.Create());
        root.Add(MergeCommand.Create());
        root.Add(InspectCommand.Create());
        root.Add(CreateTestModelCommand.Create());
        root.Add(TrainDemoCommand.Create());
        return root;
    }
}
