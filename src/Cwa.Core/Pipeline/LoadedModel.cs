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
        return Load(ModelSource.Open(modelDir, dtype), onDevice, options, progress, workload);
    }

    /// <summary>Loads the weights of an opened source onto the CPU or the device; the model then owns the source's checkpoint.</summary>
    /// <param name="onDevice">from <see cref="ResolveDevice"/>: null runs on the CPU</param>
    public static LoadedModel Load(ModelSource source, IDeviceBackendFactory? onDevice, EngineOptions options, IProgressSink progress, Workload? workload = null)
    {
        var ckpt = source.Checkpoint;
        try
        {
            if (workload is { } w)
            {
                var host = MemoryEstimate.ForAnalysis(ckpt.Config, w.Batch, w.SeqLen, w.Gradients, options.Recompute);
                // On a device the host holds no weights or activations, at most gradient sums read back for host scoring.
                if (onDevice != null) host = host with { Weights = 0, Activations = 0, Logits = 0 };
                host.EnsureFits(ckpt.Directory, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
            }
            if (onDevice != null)
                return new LoadedModel
                {
                    Path = source.Path, DisplayName = source.DisplayName, Checkpoint = ckpt, Tokenizer = source.Tokenizer, HeldType = source.HeldType,
                    Backend = onDevice.Create(ckpt, source.HeldType, options, workload, progress),
                };
            ModelWeights<float> weights;
            using (var phase = progress.Start("load", source.Specs.Count))
                weights = ReadHostWeights(ckpt, source.HeldType, phase);
            return new LoadedModel
            {
                Path = source.Path,
                DisplayName = source.DisplayName,
                Checkpoint = ckpt,
                Tokenizer = source.Tokenizer,
                Backend = new CpuBackend(weights, options),
                Weights = weights,
                HeldType = source.HeldType,
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
    public static IDeviceBackendFactory? ResolveDevice(string device, IDeviceBackendFactory? gpu, IProgressSink progress)
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
