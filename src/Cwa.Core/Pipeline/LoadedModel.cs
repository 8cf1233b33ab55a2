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
    /// <summary>The host memory the run was planned with (null when no workload was given).</summary>
    public MemoryEstimate? MemoryPlan { get; private init; }

    /// <param name="gpu">how to open the CUDA backend for `cuda` and `auto` (null: this caller has none)</param>
    public static LoadedModel Open(string? modelDir, string? dtype, string device, EngineOptions options, IProgressSink progress,
        Workload? workload = null, IDeviceBackendFactory? gpu = null, MemoryPolicy? memory = null)
    {
        var onDevice = ResolveDevice(device, gpu, progress);
        return Load(ModelSource.Open(modelDir, dtype), onDevice, options, progress, workload, memory);
    }

    /// <summary>Loads the weights of an opened source onto the CPU or the device; the model then owns the source's checkpoint.</summary>
    /// <param name="onDevice">from <see cref="ResolveDevice"/>: null runs on the CPU</param>
    /// <param name="memory">CPU placement: in memory or layer-streamed (default: auto within the available memory)</param>
    public static LoadedModel Load(ModelSource source, IDeviceBackendFactory? onDevice, EngineOptions options, IProgressSink progress, Workload? workload = null,
        MemoryPolicy? memory = null)
    {
        var ckpt = source.Checkpoint;
        try
        {
            memory ??= new MemoryPolicy();
            long budget = memory.Budget ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            var w = workload ?? new Workload(1, 16, false);
            var inMemory = MemoryEstimate.ForAnalysis(ckpt.Config, w.Batch, w.SeqLen, w.Gradients, options.Recompute, w.PerBatch);
            bool stream = memory.Streaming switch
            {
                "on" => true,
                "off" => false,
                "auto" => onDevice == null && workload != null && inMemory.Total > budget,
                _ => throw new InputException($"--streaming: unknown value '{memory.Streaming}' (valid: auto, on, off)"),
            };
            if (stream && onDevice == null) return Streamed(source, options, progress, w, budget, memory.ScratchDir, inMemory);
            if (onDevice != null)
            {
                // On a device the host holds no weights or activations, at most gradient sums read back for host scoring;
                // streamed, one block's widened weights and sums and the hidden states. The device factory picks the mode.
                var hostStreamed = MemoryEstimate.ForStreaming(ckpt.Config, w.Batch, w.SeqLen, w.Gradients, w.PerBatch, w.Tokens, hiddenInMemory: false, scoresInPlace: w.ScoresInPlace);
                var hostInMemory = inMemory with { Weights = 0, Activations = 0, Logits = 0 };
                var streaming = new DeviceStreaming(memory.Streaming, memory.ScratchDir == null ? long.MaxValue : Math.Max(0, budget - hostStreamed.Total),
                    memory.ScratchDir, hostInMemory, hostStreamed, workload == null ? 0 : budget);
                var backend = onDevice.Create(ckpt, source.HeldType, options, workload, progress, streaming);
                return new LoadedModel
                {
                    Path = source.Path, DisplayName = source.DisplayName, Checkpoint = ckpt, Tokenizer = source.Tokenizer, HeldType = source.HeldType,
                    Backend = backend, MemoryPlan = workload == null ? null : backend is StreamedBackend ? hostStreamed : hostInMemory,
                };
            }
            if (workload != null) inMemory.EnsureFits(ckpt.Directory, budget, MemoryPolicy.InMemoryFix(memory.Streaming, w.Gradients));
            ModelWeights<float> weights;
            using (var phase = progress.Start("reading weights", source.Specs.Count))
                weights = ReadHostWeights(ckpt, source.HeldType, phase);
            var cpu = new CpuBackend(weights, options);
            if (workload is { } reserve) cpu.Reserve(reserve);
            return new LoadedModel
            {
                Path = source.Path,
                DisplayName = source.DisplayName,
                Checkpoint = ckpt,
                Tokenizer = source.Tokenizer,
                Backend = cpu,
                Weights = weights,
                HeldType = source.HeldType,
                MemoryPlan = workload == null ? null : inMemory,
            };
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A layer-streamed CPU model: weights stay mapped, hidden states stay in memory while the budget allows (else
    /// they spill to a scratch file in the run's folder). Refused up front when even one block does not fit.
    /// </summary>
    private static LoadedModel Streamed(ModelSource source, EngineOptions options, IProgressSink progress, Workload w, long budget, string? scratchDir, MemoryEstimate inMemory)
    {
        var c = source.Config;
        bool mapped = StreamedWeights.ReadsMapped(source.Checkpoint, source.HeldType);
        var resident = MemoryEstimate.ForStreaming(c, w.Batch, w.SeqLen, w.Gradients, w.PerBatch, w.Tokens, hiddenInMemory: false, mappedWeights: mapped, scoresInPlace: w.ScoresInPlace);
        resident.EnsureFits(source.Checkpoint.Directory, budget, MemoryPolicy.StreamedFix);
        long hiddenBudget = scratchDir == null ? long.MaxValue : budget - resident.Total;
        long hidden = MemoryEstimate.HiddenBytes(c, w.Tokens, w.Gradients);
        var backend = StreamedBackend.OnCpu(source.Checkpoint, source.HeldType, options, hiddenBudget, scratchDir);
        backend.Reserve(w);
        bool keptInMemory = w.Gradients && MemoryEstimate.KeepsInMemory(MemoryEstimate.KeptBytes(c, w.Tokens), hidden, hiddenBudget);
        var plan = hidden <= hiddenBudget || keptInMemory
            ? MemoryEstimate.ForStreaming(c, w.Batch, w.SeqLen, w.Gradients, w.PerBatch, w.Tokens, hiddenInMemory: hidden <= hiddenBudget, keptInMemory, mapped, w.ScoresInPlace)
            : resident;
        progress.Info($"layer streaming: weights stay mapped and {(mapped ? "the products widen bf16 panels as they pack them" : "one block at a time is widened")} (in memory the run would need {MemoryEstimate.Format(inMemory.Total)}, " +
            $"the budget is {MemoryEstimate.Format(budget)}); hidden states {MemoryEstimate.Format(hidden)} {(hidden <= hiddenBudget ? "in memory" : "in a scratch file")}");
        return new LoadedModel
        {
            Path = source.Path, DisplayName = source.DisplayName, Checkpoint = source.Checkpoint, Tokenizer = source.Tokenizer, HeldType = source.HeldType,
            Backend = backend,
            MemoryPlan = plan,
        };
    }

    /// <summary>Every tensor widened to fp32 and rounded to the held dtype; non-finite values are refused, naming the shard.</summary>
    private static ModelWeights<float> ReadHostWeights(CheckpointFolder ckpt, DType held, IPhaseProgress? phase)
    {
        var weights = ModelWeights<float>.Load(ckpt.Config, ckpt, name => { phase?.Describe(name); phase?.Advance(); });
        for (int i = 0; i < weights.Count; i++)
            HeldValues.Prepare(ckpt, weights.Specs[i].Name, 0, weights[i], held);
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

    /// <summary>The model's identity for a manifest: where it is, what it is, and a hash of every shard header.</summary>
    public System.Text.Json.Nodes.JsonObject ManifestEntry() => new()
    {
        ["path"] = System.IO.Path.GetFullPath(Path),
        ["name"] = DisplayName,
        ["architecture"] = Config.Architecture,
        ["model_type"] = Config.ModelType,
        ["parameter_count"] = ParameterCount,
        ["num_tensors"] = Backend.Specs.Count,
        ["stored_dtype"] = Checkpoint.StoredType(Backend.Specs[0].Name).ToString(),
        ["held_dtype"] = HeldType.ToString().ToLowerInvariant(),
        ["shard_header_sha256"] = new System.Text.Json.Nodes.JsonObject(Checkpoint.ShardHeaderSha256.Select(kv => KeyValuePair.Create(kv.Key, (System.Text.Json.Nodes.JsonNode?)kv.Value))),
    };

    public void Dispose()
    {
        Backend.Dispose();
        Checkpoint.Dispose();
    }
}
