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
    private ModelWeights<float>? _weights;

    /// <summary>
    /// fp32 host copy of the held weights: the CPU backend's own. A device backend has none; it is read from the
    /// checkpoint only if something asks (Hutchinson, which runs on the CPU in fp64).
    /// </summary>
    public ModelWeights<float> Weights
    {
        get => _weights ??= ReadHostWeights(Checkpoint, HeldType, null);
        init => _weights = value;
    }

    public long ParameterCount => Backend.Specs.Sum(s => s.NumElements);
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
                // On a device the host holds no weights or activations, at most gradient sums read back for host scoring.
                if (onDevice != null) host = host with { Weights = 0, Activations = 0, Logits = 0 };
                host.EnsureFits(ckpt.Directory, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
            }
            var tokenizer = TokenizerLoader.Load(path, ckpt.Config);
            if (tokenizer.VocabSize > ckpt.Config.VocabSize)
                throw new InputException($"{path}: tokenizer has {tokenizer.VocabSize} tokens but config.json says vocab_size {ckpt.Config.VocabSize}");
            var specs = LlamaLayout.Parameters(ckpt.Config);
            var stored = ckpt.StoredType(specs.First(s => s.Is2D).Name);
            var held = dtype == null ? stored : DTypeInfo.Parse(dtype);
            if (held == DType.F64) held = DType.F32;
            if (onDevice != null)
                return new LoadedModel
                {
                    Path = path, DisplayName = modelDir ?? DemoModel.Name, Checkpoint = ckpt, Tokenizer = tokenizer, HeldType = held,
                    Backend = onDevice.Create(ckpt, held, options, workload, progress),
                };
            ModelWeights<float> weights;
            using (var phase = progress.Start("load", specs.Count))
                weights = ReadHostWeights(ckpt, held, phase);
            return new LoadedModel
            {
                Path = path,
                DisplayName = modelDir ?? DemoModel.Name,
                Checkpoint = ckpt,
                Tokenizer = tokenizer,
                Backend = new CpuBackend(weights, options),
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

    /// <summary>Every tensor widened to fp32 and rounded to the held dtype; non-finite values are refused, naming the shard.</summary>
    private static ModelWeights<float> ReadHostWeights(CheckpointFolder ckpt, DType held, IPhaseProgress? phase)
    {
        var weights = ModelWeights<float>.Load(ckpt.Config, ckpt, name => { phase?.Describe(name); phase?.Advance(); });
        for (int i = 0; i < weights.Count; i++)
        {
            var spec = weights.Specs[i];
            // Values read from a tensor stored as the held dtype are already exact in it.
            if (ckpt.StoredType(spec.Name) != held) DTypeConversion.RoundTo(weights[i], held);
            long bad = NonFinite.FirstIndex(weights[i]);
            if (bad >= 0)
                throw new InputException($"{ckpt.ShardOf(spec.Name)}: tensor {spec.Name} holds a non-finite value at flat index {bad}");
        }
        return weights;
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
