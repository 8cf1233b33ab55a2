using System.CommandLine;
using Cwa.Core;
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
    private static readonly Option<string?> Preset = new("--preset")
    {
        Description = $"Print the plans of a create-test-model preset's shape instead of a model folder (no weights needed): {string.Join(", ", TestModelPresets.Names)}.",
    };
    private static readonly Option<string?> DeviceMemory = new("--device-memory")
    {
        Description = "GPU memory to check the GPU plans against, e.g. 80G (default: only print them).",
    };

    public static Command Create()
    {
        var cmd = new Command("inspect", "Print a model folder's architecture, tensors, parameter count, dtype and the memory an analyze run needs.");
        foreach (var o in new Option[] { Model, Preset, MaxLength, BatchSize, DeviceMemory, Tensors, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, w) =>
        {
            long? deviceMemory = SizeParser.Parse(parse.GetValue(DeviceMemory), "--device-memory");
            if (parse.GetValue(Preset) is { } preset)
            {
                if (parse.GetValue(Model) != null) throw new InputException("--preset and --model: give one (--preset prints a generated shape's plans without a folder)");
                var pc = TestModelPresets.Config(preset, TestModelPresets.Vocabulary(preset));
                w.WriteLine($"preset:       {preset} (no folder: plans only)");
                Describe(w, pc, LlamaLayout.Parameters(pc), TestModelGenerator.DefaultDType(preset), parse, deviceMemory);
                return ExitCodes.Ok;
            }
            using var ckpt = CheckpointFolder.Open(parse.GetValue(Model) ?? Cwa.Core.Pipeline.DemoModel.Extract());
            ckpt.ValidateLayout();
            var c = ckpt.Config;
            var specs = LlamaLayout.Parameters(c);
            long stored = ckpt.ShardPaths.Sum(p => new FileInfo(p).Length);
            w.WriteLine($"model:        {ckpt.Directory}");
            Describe(w, c, specs, ckpt.StoredType(specs[0].Name), parse, deviceMemory, $"{MemoryEstimate.Format(stored)} in {ckpt.ShardPaths.Count} shard(s)");
            if (parse.GetValue(Tensors))
                foreach (var s in specs)
                    w.WriteLine($"  {s.Name,-50} [{string.Join(", ", s.Shape)}] {ckpt.StoredType(s.Name)}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>The architecture and the memory plans of every way an analyze run can hold the model.</summary>
    private static void Describe(TextWriter w, ModelConfig c, IReadOnlyList<ParameterSpec> specs, DType storedType, ParseResult parse, long? deviceMemory, string? storedSize = null)
    {
        w.WriteLine($"architecture: {c.Architecture} (model_type {c.ModelType})");
        w.WriteLine($"layers {c.NumLayers}, hidden {c.HiddenSize}, heads {c.NumHeads} (kv {c.NumKvHeads}, head_dim {c.HeadDim}), intermediate {c.IntermediateSize}, vocab {c.VocabSize}");
        w.WriteLine($"rope_theta {c.RopeTheta}{(c.RopeScaling is { } rs ? $", rope_scaling {rs.Type} x{rs.Factor}" : "")}, tied embeddings: {(c.TieWordEmbeddings ? "yes" : "no")}, attention bias: {(c.AttentionBias ? "yes" : "no")}");
        w.WriteLine($"parameters:   {specs.Sum(s => s.NumElements):N0} in {specs.Count} tensors ({specs.Count(s => s.Is2D)} two-dimensional)");
        w.WriteLine($"stored:       {storedType}{(storedSize != null ? $", {storedSize}" : "")}");
        int batch = parse.GetValue(BatchSize), length = parse.GetValue(MaxLength);
        var m = MemoryEstimate.ForAnalysis(c, batch, length);
        w.WriteLine($"analyze (CPU, batch {batch} x {length} tokens): weights {MemoryEstimate.Format(m.Weights)}, gradients {MemoryEstimate.Format(m.Gradients)}, activations {MemoryEstimate.Format(m.Activations)}, logits {MemoryEstimate.Format(m.Logits)}, total {MemoryEstimate.Format(m.Total)}");
        foreach (bool perBatch in new[] { false, true })
        {
            var s = MemoryEstimate.ForStreaming(c, batch, length, true, perBatch, 0, hiddenInMemory: false, mappedWeights: storedType == DType.BF16, scoresInPlace: perBatch);
            w.WriteLine($"analyze (CPU, layer streaming{(perBatch ? ", fisher/obd" : "")}): weights {MemoryEstimate.Format(s.Weights)}, gradients and scores {MemoryEstimate.Format(s.Gradients)}, " +
                $"activations {MemoryEstimate.Format(s.Activations)}, logits {MemoryEstimate.Format(s.Logits)}, total {MemoryEstimate.Format(s.Total)}" +
                $" + hidden states {MemoryEstimate.Format(MemoryEstimate.HiddenBytes(c, 1000, true))} per 1,000 calibration tokens (a scratch file beyond --memory-budget)");
        }
        var format = Cuda.StorageFormats.Of(storedType);
        foreach (bool recompute in new[] { false, true })
        {
            var shape = new Cuda.Engine.WorkspaceShape(batch, length, true, recompute, Cuda.CudaBackend.DefaultLogitsChunk);
            GpuPlan(w, $"analyze (GPU{(recompute ? ", --recompute" : "")})", Cuda.Engine.DeviceMemoryPlan.For("GPU", c, format, shape, deviceMemory ?? 0), deviceMemory);
        }
        foreach (bool perBatch in new[] { false, true })
        {
            var shape = new Cuda.Engine.WorkspaceShape(batch, length, true, false, Cuda.CudaBackend.DefaultLogitsChunk);
            GpuPlan(w, $"analyze (GPU, layer streaming{(perBatch ? ", fisher/obd" : "")})",
                Cuda.Engine.DeviceMemoryPlan.ForStreaming("GPU", c, format, shape, perBatch, deviceMemory ?? 0), deviceMemory);
        }
    }

    private static void GpuPlan(TextWriter w, string label, Cuda.Engine.DeviceMemoryPlan g, long? deviceMemory) =>
        w.WriteLine($"{label}: weights {MemoryEstimate.Format(g.Weights)}, gradients {MemoryEstimate.Format(g.Gradients)}, " +
            $"activations {MemoryEstimate.Format(g.Activations)}, workspace {MemoryEstimate.Format(g.Workspace)}, total {MemoryEstimate.Format(g.Total)}" +
            (deviceMemory is { } m ? $" ({(g.Fits ? "fits" : "does not fit")} {MemoryEstimate.Format(m)} with {MemoryEstimate.Format(Cuda.Engine.DeviceMemoryPlan.Reserve)} for the CUDA context)" : ""));
}
