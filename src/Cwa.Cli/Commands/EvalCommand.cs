using System.CommandLine;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa eval`: held-out NLL, perplexity and top-1 accuracy of a model.</summary>
internal static class EvalCommand
{

    public static Command Create()
    {
        var cmd = new Command("eval", "Measure token-weighted NLL, perplexity and top-1 accuracy on held-out texts.");
        foreach (var o in new Option[] { CommonOptions.Model, HeldOutOptions.DataFile, HeldOutOptions.TextField, HeldOutOptions.MaxLength, HeldOutOptions.BatchSize, CommonOptions.Dtype, CommonOptions.Device, CommonOptions.CudaLibDir, CommonOptions.Threads, CommonOptions.Streaming, CommonOptions.MemoryBudget, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var r = new AnalyzeRequest { Model = parse.GetValue(CommonOptions.Model), EvalFile = parse.GetValue(HeldOutOptions.DataFile), TextField = parse.GetValue(HeldOutOptions.TextField)!,
                MaxLength = CommonOptions.Positive(parse.GetValue(HeldOutOptions.MaxLength), "--max-length", 2), BatchSize = CommonOptions.Positive(parse.GetValue(HeldOutOptions.BatchSize), "--batch-size"), Dtype = parse.GetValue(CommonOptions.Dtype), Threads = parse.GetValue(CommonOptions.Threads) };
            var m = ConsoleProgress.Run(parse, stdout, sink =>
            {
                var (device, gpu) = DeviceChoice.Resolve(parse.GetValue(CommonOptions.Device)!, parse.GetValue(CommonOptions.CudaLibDir));
                var onDevice = LoadedModel.ResolveDevice(device, gpu, sink);
                var source = ModelSource.Open(r.Model, r.Dtype);
                IReadOnlyList<Cwa.Core.Data.Batch> batches;
                try { batches = CalibrationData.Load(r).EvaluationBatches(source.Tokenizer, r); }
                catch { source.Dispose(); throw; }
                using var model = LoadedModel.Load(source, onDevice, new EngineOptions(r.Threads), sink,
                    new Workload(batches.Max(b => b.BatchSize), batches.Max(b => b.SeqLen), Gradients: false, Tokens: batches.Sum(b => b.Lengths.Sum())),
                    new MemoryPolicy(parse.GetValue(CommonOptions.Streaming)!, SizeParser.Parse(parse.GetValue(CommonOptions.MemoryBudget), "--memory-budget")));
                using var phase = sink.Start("evaluate", batches.Count);
                return Evaluator.Run(model.Backend, batches, phase);
            });
            stdout.WriteLine($"tokens {m.Tokens}  nll {m.Nll:F4}  perplexity {m.Perplexity:F3}  top-1 accuracy {m.Accuracy:P2}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
