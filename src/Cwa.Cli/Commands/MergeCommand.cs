using System.CommandLine;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa merge SHARD...`: sum the shards' partial sums and finish the analyze run they came from.</summary>
internal static class MergeCommand
{
    private static readonly Argument<string[]> Shards = new("shards") { Description = "The shard files (shard-I-of-N.safetensors) of one sharded analyze run, all N of them, in any order.", Arity = ArgumentArity.OneOrMore };
    private static readonly Option<string> OutDir = new("--out-dir", "-o") { Description = "Output directory of the merged run (created; replaced as a whole when complete).", DefaultValueFactory = _ => "results" };

    public static Command Create()
    {
        var cmd = new Command("merge", "Combine the shard files of a sharded `analyze --shard I/N` run: checks that every shard is there once and belongs to the same run, sums the partial sums in shard order, then scores, ranks, perturbs and reports exactly as the single run would.");
        cmd.Add(Shards);
        foreach (var o in new Option[] { OutDir, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var shards = parse.GetValue(Shards)!;
            var request = ShardFiles.Request(shards[0]) with { OutDir = parse.GetValue(OutDir)!, MergeShards = shards };
            var (device, gpu) = DeviceChoice.Resolve(request.Device, null);
            request = request with { Device = device };
            var summary = ConsoleProgress.Run(parse, stdout, sink => AnalysisPipeline.Run(request, sink, gpu));
            if (!parse.GetValue(CommandRunner.Quiet)) SummaryPrinter.Print(summary, stdout);
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
