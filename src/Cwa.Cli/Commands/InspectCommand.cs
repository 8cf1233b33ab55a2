using System.CommandLine;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Cli.Commands;

/// <summary>`cwa inspect`: architecture, tensors, parameter count, dtype and memory estimate of a model folder.</summary>
internal static class InspectCommand
{
    private static readonly Option<string?> Model = new("--model", "-m") { Description = "Hugging Face model folder (default: the built-in demo model)." };
    private static readonly Option<int> MaxLength = new("--max-length") { Description = "Sequence length for the memory estimate.", DefaultValueFactory = _ => 256 };
    private static readonly Option<int> BatchSize = new("--batch-size") { Description = "Batch size for the memory estimate.", DefaultValueFactory = _ => 8 };
    private static readonly Option<bool> Tensors = new("--tensors") { Description = "List every tensor." };

    public static Command Create()
    {
        var cmd = new Command("inspect", "Print a model folder's architecture, tensors, parameter count, dtype and the memory an analyze run needs.");
        foreach (var o in new Option[] { Model, MaxLength, BatchSize, Tensors, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, w) =>
        {
            using var ckpt = CheckpointFolder.Open(parse.GetValue(Model) ?? Cwa.Core.Pipeline.DemoModel.Extract());
            ckpt.ValidateLayout();
            var c = ckpt.Config;
            var specs = LlamaLayout.Parameters(c);
            long stored = ckpt.ShardPaths.Sum(p => new FileInfo(p).Length);
            w.WriteLine($"model:        {ckpt.Directory}");
            w.WriteLine($"architecture: {c.Architecture} (model_type {c.ModelType})");
            w.WriteLine($"layers {c.NumLayers}, hidden {c.HiddenSize}, heads {c.NumHeads} (kv {c.NumKvHeads}, head_dim {c.HeadDim}), intermediate {c.IntermediateSize}, vocab {c.VocabSize}");
            w.WriteLine($"rope_theta {c.RopeTheta}{(c.RopeScaling is { } rs ? $", rope_scaling {rs.Type} x{rs.Factor}" : "")}, tied embeddings: {(c.TieWordEmbeddings ? "yes" : "no")}, attention bias: {(c.AttentionBias ? "yes" : "no")}");
            w.WriteLine($"parameters:   {ckpt.TotalParameters:N0} in {specs.Count} tensors ({specs.Count(s => s.Is2D)} two-dimensional)");
            w.WriteLine($"stored:       {ckpt.StoredType(specs[0].Name)}, {MemoryEstimate.Format(stored)} in {ckpt.ShardPaths.Count} shard(s)");
            var m = MemoryEstimate.ForAnalysis(c, parse.GetValue(BatchSize), parse.GetValue(MaxLength));
            w.WriteLine($"analyze (CPU, batch {parse.GetValue(BatchSize)} x {parse.GetValue(MaxLength)} tokens): weights {MemoryEstimate.Format(m.Weights)}, gradients {MemoryEstimate.Format(m.Gradients)}, activations {MemoryEstimate.Format(m.Activations)}, logits {MemoryEstimate.Format(m.Logits)}, total {MemoryEstimate.Format(m.Total)}");
            foreach (bool perBatch in new[] { false, true })
            {
                var s = MemoryEstimate.ForStreaming(c, parse.GetValue(BatchSize), parse.GetValue(MaxLength), true, perBatch, 0, hiddenInMemory: false);
                w.WriteLine($"analyze (CPU, layer streaming{(perBatch ? ", fisher/obd" : "")}): weights {MemoryEstimate.Format(s.Weights)}, gradients and scores {MemoryEstimate.Format(s.Gradients)}, " +
                    $"activations {MemoryEstimate.Format(s.Activations)}, logits {MemoryEstimate.Format(s.Logits)}, total {MemoryEstimate.Format(s.Total)}" +
                    $" + hidden states {MemoryEstimate.Format(MemoryEstimate.HiddenBytes(c, 1000, true))} per 1,000 calibration tokens (a scratch file beyond --memory-budget)");
            }
            foreach (bool recompute in new[] { false, true })
            {
                var shape = new Cuda.Engine.WorkspaceShape(parse.GetValue(BatchSize), parse.GetValue(MaxLength), true, recompute, Cuda.CudaBackend.DefaultLogitsChunk);
                var g = Cuda.Engine.DeviceMemoryPlan.For("GPU", c, Cuda.StorageFormats.Of(ckpt.StoredType(specs[0].Name)), shape, 0);
                w.WriteLine($"analyze (GPU{(recompute ? ", --recompute" : "")}): weights {MemoryEstimate.Format(g.Weights)}, gradients {MemoryEstimate.Format(g.Gradients)}, " +
                    $"activations {MemoryEstimate.Format(g.Activations)}, workspace {MemoryEstimate.Format(g.Workspace)}, total {MemoryEstimate.Format(g.Total)}");
            }
            if (parse.GetValue(Tensors))
                foreach (var s in specs)
                    w.WriteLine($"  {s.Name,-50} [{string.Join(", ", s.Shape)}] {ckpt.StoredType(s.Name)}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
