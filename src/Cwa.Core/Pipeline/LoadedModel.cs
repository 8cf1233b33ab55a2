using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Pipeline;

/// <summary>
/// A checkpoint opened, validated and loaded onto a backend, with its tokenizer. Weights are converted tensor by
/// tensor from the memory-mapped shards and, with --dtype, rounded to that precision so the engine computes on
/// exactly the values a bf16/f16 deployment would hold.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    public required string Path { get; init; }
    public required string DisplayName { get; init; }
    public required CheckpointFolder Checkpoint { get; init; }
    public required ITextTokenizer Tokenizer { get; init; }
    public required IBackend Backend { get; init; }
    public required ModelWeights<float> Weights { get; init; }
    /// <summary>The dtype weights are held in (defines what bit_flip flips).</summary>
    public required DType HeldType { get; init; }
    public ModelConfig Config => Checkpoint.Config;

    /// <param name="gpu">how to open the CUDA backend for `cuda` and `auto` (null: this caller has none)</param>
    public static LoadedModel Open(string? modelDir, string? dtype, string device, EngineOptions options, IProgressSink progress,
        Workload? workload = null, IDeviceBackendFactory? gpu = null)
    {
        var onDevice = ResolveDevice(device, gpu, progress);
        string path = modelDir ?? DemoModel.Extract();
        var ckpt = CheckpointFolder.Open(path);
        try
        {
            ckpt.ValidateLayout();
            if (workload is { } w)
            {
                var host = MemoryEstimate.ForAnalysis(ckpt.Config, w.Batch, w.SeqLen, w.Gradients, options.Recompute);
                // On a device the host keeps the fp32 weights and the gradient sums read back, not the activations.
                if (onDevice != null) host = host with { Activations = 0, Logits = 0 };
                host.EnsureFits(ckpt.Directory, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
            }
            var tokenizer = TokenizerLoader.Load(path, ckpt.Config);
            if (tokenizer.VocabSize > ckpt.Config.VocabSize)
                throw new InputException($"{path}: tokenizer has {tokenizer.VocabSize} tokens but config.json says vocab_size {ckpt.Config.VocabSize}");
            var specs = LlamaLayout.Parameters(ckpt.Config);
            var stored = ckpt.StoredType(specs.First(s => s.Is2D).Name);
            var held = dtype == null ? stored : DTypeInfo.Parse(dtype);
            if (held == DType.F64) held = DType.F32;
            ModelWeights<float> weights;
            using (var phase = progress.Start("load", specs.Count))
                weights = ModelWeights<float>.Load(ckpt.Config, ckpt, name => { phase.Describe(name); phase.Advance(); });
            for (int i = 0; i < weights.Count; i++)
            {
                // Values read from a tensor stored as the held dtype are already exact in it.
                if (ckpt.StoredType(specs[i].Name) != held) DTypeConversion.RoundTo(weights[i], held);
                long bad = NonFinite.FirstIndex(weights[i], options.EffectiveThreads);
                if (bad >= 0)
                    throw new InputException($"{ckpt.ShardOf(specs[i].Name)}: tensor {specs[i].Name} holds a non-finite value at flat index {bad}");
            }
            return new LoadedModel
            {
                Path = path,
                DisplayName = modelDir ?? DemoModel.Name,
                Checkpoint = ckpt,
                Tokenizer = tokenizer,
                Backend = onDevice != null ? onDevice.Create(weights, held, options, workload, progress) : new CpuBackend(weights, options),
                Weights = weights,
                HeldType = held,
            };
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    /// <summary>The device factory to use, or null for the CPU; `cuda` without a usable GPU fails here, before any loading.</summary>
    private static IDeviceBackendFactory? ResolveDevice(string device, IDeviceBackendFactory? gpu, IProgressSink progress)
    {
        switch (device)
        {
            case "cpu":
                return null;
            case "cuda":
                if (gpu == null) throw new InputException("--device cuda: this command has no CUDA backend; use --device cpu");
                return gpu.Unavailable() is { } reason ? throw new InputException(reason) : gpu;
            case "auto":
                if (gpu == null) return null;
                if (gpu.Unavailable() is not { } why) return gpu;
                // The short form: where cuBLAS was looked for is what --device cuda reports in full.
                string brief = why.StartsWith("--device cuda: ", StringComparison.Ordinal) ? why[15..] : why;
                int detail = brief.IndexOf("; looked in", StringComparison.Ordinal);
                progress.Info($"no usable GPU, running on the CPU ({(detail > 0 ? brief[..detail] : brief)}; --device cuda says more)");
                return null;
            default:
                throw new InputException($"--device: unknown device '{device}' (valid: auto, cpu, cuda, ilgpu-cpu)");
        }
    }

    public void Dispose()
    {
        Backend.Dispose();
        Checkpoint.Dispose();
    }
}
