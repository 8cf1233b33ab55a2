using System.CommandLine;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa perturb`: perturb a given list of weights and measure held-out perplexity before and after.</summary>
internal static class PerturbCommand
{
    private static readonly Option<string> Targets = new("--targets", "-t")
    {
        Description = "Weights to perturb: a CSV with parameter,indices (a run's top_weights.csv) or tensor,row,col[,label,source], or the same as a JSON array.",
        Required = true,
    };
    private static readonly Option<bool> Each = new("--each") { Description = "Perturb each target alone (restored in between) instead of all of them jointly." };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed for gauss_noise, --perturb-prob and the random_k draws.", DefaultValueFactory = _ => 42 };
    private static readonly Option<int> ControlSeeds = new("--control-seeds") { Description = "Also perturb as many random weights in the same tensors, this many draws per set (mean and 95% interval); 0 = no control.", DefaultValueFactory = _ => 0 };
    private static readonly Option<string> OutDir = new("--out-dir", "-o") { Description = "Output directory (created; replaced as a whole when the run completes).", DefaultValueFactory = _ => "perturb-results" };

    public static Command Create()
    {
        var cmd = new Command("perturb", "Perturb a given list of weights (e.g. a run's top_weights.csv, or published super weights), jointly or --each one at a time, and measure held-out NLL, perplexity and accuracy before and after.");
        Option[] options = [CommonOptions.Model, Targets, Each, .. PerturbationOptions.All, Seed, ControlSeeds, HeldOutOptions.DataFile, HeldOutOptions.TextField,
                     HeldOutOptions.MaxLength, HeldOutOptions.BatchSize, CommonOptions.Dtype, CommonOptions.Device, CommonOptions.CudaLibDir, CommonOptions.Threads,
                     CommonOptions.Streaming, CommonOptions.MemoryBudget, OutDir, CommonOptions.ExperimentName, CommandRunner.Quiet, CommandRunner.Verbose];
        foreach (var o in options) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var (device, gpu) = DeviceChoice.Resolve(parse.GetValue(CommonOptions.Device)!, parse.GetValue(CommonOptions.CudaLibDir));
            var r = new PerturbRequest
            {
                Model = parse.GetValue(CommonOptions.Model),
                Targets = parse.GetValue(Targets)!,
                Each = parse.GetValue(Each),
                Settings = PerturbationOptions.Read(parse),
                Seed = parse.GetValue(Seed),
                ControlSeeds = parse.GetValue(ControlSeeds),
                DataFile = parse.GetValue(HeldOutOptions.DataFile),
                TextField = parse.GetValue(HeldOutOptions.TextField)!,
                MaxLength = CommonOptions.Positive(parse.GetValue(HeldOutOptions.MaxLength), "--max-length", 2),
                BatchSize = CommonOptions.Positive(parse.GetValue(HeldOutOptions.BatchSize), "--batch-size"),
                Dtype = parse.GetValue(CommonOptions.Dtype),
                Device = device,
                Threads = CommonOptions.Positive(parse.GetValue(CommonOptions.Threads), "--threads"),
                Streaming = parse.GetValue(CommonOptions.Streaming)!,
                MemoryBudget = SizeParser.Parse(parse.GetValue(CommonOptions.MemoryBudget), "--memory-budget"),
                OutDir = parse.GetValue(OutDir)!,
                ExperimentName = parse.GetValue(CommonOptions.ExperimentName),
            };
            var report = ConsoleProgress.Run(parse, stdout, sink => TargetPerturbation.Run(r, sink, gpu));
            if (!parse.GetValue(CommandRunner.Quiet)) SummaryPrinter.Print(report, r.OutDir, stdout);
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
