using System.CommandLine;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa eval`: held-out NLL, perplexity and top-1 accuracy of a model.</summary>
internal static class EvalCommand
{
    private static readonly Option<string?> Tasks = new("--tasks") { Description = "Downstream tasks: builtin (a cloze and a last-word set from the held-out texts) or JSONL files, comma-separated: multiple choice {context, choices, label} or last word {text}." };

    public static Command Create()
    {
        var cmd = new Command("eval", "Measure token-weighted NLL, perplexity and top-1 accuracy on held-out texts, and optionally downstream tasks (--tasks).");
        foreach (var o in new Option[] { CommonOptions.Model, HeldOutOptions.DataFile, HeldOutOptions.TextField, HeldOutOptions.MaxLength, HeldOutOptions.BatchSize, Tasks, CommonOptions.Dtype, CommonOptions.Device, CommonOptions.CudaLibDir, CommonOptions.Threads, CommonOptions.Streaming, CommonOptions.MemoryBudget, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var r = new AnalyzeRequest { Model = parse.GetValue(CommonOptions.Model), EvalFile = parse.GetValue(HeldOutOptions.DataFile), TextField = parse.GetValue(HeldOutOptions.TextField)!,
                MaxLength = CommonOptions.Positive(parse.GetValue(HeldOutOptions.MaxLength), "--max-length", 2), BatchSize = CommonOptions.Positive(parse.GetValue(HeldOutOptions.BatchSize), "--batch-size"), Dtype = parse.GetValue(CommonOptions.Dtype), Threads = parse.GetValue(CommonOptions.Threads) };
            // Task files are read (and refused) before the model is loaded.
            var tasks = parse.GetValue(Tasks) is { } spec ? TaskItems.Load(spec) : [];
            var (m, results) = ConsoleProgress.Run(parse, stdout, sink =>
            {
                var (device, gpu) = DeviceChoice.Resolve(parse.GetValue(CommonOptions.Device)!, parse.GetValue(CommonOptions.CudaLibDir));
                var onDevice = LoadedModel.ResolveDevice(device, gpu, sink);
                var source = ModelSource.Open(r.Model, r.Dtype);
                IReadOnlyList<Cwa.Core.Data.Batch> batches;
                try { batches = CalibrationData.Load(r).EvaluationBatches(source.Tokenizer, r); }
                catch { source.Dispose(); throw; }
                using var model = LoadedModel.Load(source, onDevice, new EngineOptions(r.Threads), sink,
                    new Workload(batches.Max(b => b.BatchSize), Math.Max(batches.Max(b => b.SeqLen), tasks.Count > 0 ? r.MaxLength : 0), Gradients: false, Tokens: batches.Sum(b => b.Lengths.Sum())),
                    new MemoryPolicy(parse.GetValue(CommonOptions.Streaming)!, SizeParser.Parse(parse.GetValue(CommonOptions.MemoryBudget), "--memory-budget")));
                EvalMetrics metrics;
                using (var phase = sink.Start("evaluate", batches.Count))
                    metrics = Evaluator.Run(model.Backend, batches, phase);
                return (metrics, new TaskSuite(tasks, model.Tokenizer, r.MaxLength).Run(model.Backend, sink));
            });
            stdout.WriteLine($"tokens {m.Tokens}  nll {m.Nll:F4}  perplexity {m.Perplexity:F3}  top-1 accuracy {m.Accuracy:P2}");
            foreach (var t in results)
                stdout.WriteLine($"task {t.Task} ({t.Kind.Replace('_', ' ')}, {t.Items} items{(t.Skipped > 0 ? $", {t.Skipped} longer than --max-length skipped" : "")}): acc {t.Accuracy:F4}" +
                    (t.AccuracyNorm is double n ? $"  acc_norm {n:F4}" : "") + (t.TargetNll is double nll ? $"  target nll {nll:F4}" : ""));
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
