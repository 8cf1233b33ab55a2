using System.CommandLine;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa eval`: held-out NLL, perplexity and top-1 accuracy of a model.</summary>
internal static class EvalCommand
{
    private static readonly Option<string?> Model = new("--model", "-m") { Description = "Model folder (default: the built-in demo model)." };
    private static readonly Option<string?> DataFile = new("--data-file") { Description = "Texts to evaluate on (.txt/.jsonl/.parquet). Default: the built-in held-out texts." };
    private static readonly Option<string> TextField = new("--text-field") { Description = "Field/column holding the text.", DefaultValueFactory = _ => "text" };
    private static readonly Option<int> MaxLength = new("--max-length") { Description = "Truncate texts to this many tokens.", DefaultValueFactory = _ => 256 };
    private static readonly Option<int> BatchSize = new("--batch-size") { Description = "Sequences per batch.", DefaultValueFactory = _ => 8 };
    private static readonly Option<string?> Dtype = new("--dtype") { Description = "Hold weights as bf16, f16 or f32 (default: as stored)." };
    private static readonly Option<string> Device = new("--device") { Description = "cpu, cuda or auto (cuda when available, else cpu); ilgpu-cpu runs the CUDA code path on the CPU.", DefaultValueFactory = _ => "auto" };
    private static readonly Option<string?> CudaLibDir = new("--cuda-lib-dir") { Description = "Folder holding libcublas.so." };
    private static readonly Option<int> Threads = new("--threads") { Description = "CPU threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
    private static readonly Option<string> Streaming = new("--streaming") { Description = "Layer streaming on the CPU (weights stay memory-mapped): auto (when the model does not fit --memory-budget), on or off.", DefaultValueFactory = _ => "auto" };
    private static readonly Option<string?> MemoryBudget = new("--memory-budget") { Description = "Memory the run may use, e.g. 8G (default: what the machine has available)." };

    public static Command Create()
    {
        var cmd = new Command("eval", "Measure token-weighted NLL, perplexity and top-1 accuracy on held-out texts.");
        foreach (var o in new Option[] { Model, DataFile, TextField, MaxLength, BatchSize, Dtype, Device, CudaLibDir, Threads, Streaming, MemoryBudget, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var r = new AnalyzeRequest { Model = parse.GetValue(Model), EvalFile = parse.GetValue(DataFile), TextField = parse.GetValue(TextField)!,
                MaxLength = Positive(parse.GetValue(MaxLength), "--max-length", 2), BatchSize = Positive(parse.GetValue(BatchSize), "--batch-size"), Dtype = parse.GetValue(Dtype), Threads = parse.GetValue(Threads) };
            var m = ConsoleProgress.Run(parse, stdout, sink =>
            {
                var (device, gpu) = DeviceChoice.Resolve(parse.GetValue(Device)!, parse.GetValue(CudaLibDir));
                var onDevice = LoadedModel.ResolveDevice(device, gpu, sink);
                var source = ModelSource.Open(r.Model, r.Dtype);
                IReadOnlyList<Cwa.Core.Data.Batch> batches;
                try { batches = CalibrationData.Load(r).EvaluationBatches(source.Tokenizer, r); }
                catch { source.Dispose(); throw; }
                using var model = LoadedModel.Load(source, onDevice, new EngineOptions(r.Threads), sink,
                    new Workload(batches.Max(b => b.BatchSize), batches.Max(b => b.SeqLen), Gradients: false, Tokens: batches.Sum(b => b.Lengths.Sum())),
                    new MemoryPolicy(parse.GetValue(Streaming)!, SizeParser.Parse(parse.GetValue(MemoryBudget), "--memory-budget")));
                using var phase = sink.Start("evaluate", batches.Count);
                return Evaluator.Run(model.Backend, batches, phase);
            });
            stdout.WriteLine($"tokens {m.Tokens}  nll {m.Nll:F4}  perplexity {m.Perplexity:F3}  top-1 accuracy {m.Accuracy:P2}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static int Positive(int v, string name, int min = 1) =>
        v >= min ? v : throw new Cwa.Core.InputException($"{name} must be at least {min} (got {v})");
}
