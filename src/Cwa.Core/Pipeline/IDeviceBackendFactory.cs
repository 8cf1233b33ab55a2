using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;

namespace Cwa.Core.Pipeline;

/// <summary>
/// What one forward/backward of the run will hold at most: the memory plans are sized from it. PerBatch: gradients
/// are kept per batch besides their sum (Fisher). Tokens: real tokens of all calibration batches (the hidden
/// states a layer-major pass saves). ScoresInPlace: the scores overwrite the Fisher sums (fisher, obd), so a
/// streamed run never holds a vocabulary-sized score array.
/// </summary>
public readonly record struct Workload(int Batch, int SeqLen, bool Gradients, bool PerBatch = false, long Tokens = 0, bool ScoresInPlace = false);

/// <summary>
/// Where a run holds the model. Streaming: "on", "off" or "auto" (on when the in-memory plan exceeds the budget).
/// Budget: bytes the run may use (null: the memory available to the process). ScratchDir: where hidden states spill.
/// </summary>
public sealed record MemoryPolicy(string Streaming = "auto", long? Budget = null, string? ScratchDir = null)
{
    /// <summary>What to try when even one streamed block does not fit.</summary>
    public const string StreamedFix = "lower --batch-size or --max-length, or raise --memory-budget";

    /// <summary>What to try when an in-memory run does not fit: only what the command can change (eval has no gradients, so no --recompute).</summary>
    public static string InMemoryFix(string streaming, bool gradients) =>
        $"try {(streaming == "off" ? "" : "--streaming on (layer streaming), ")}{(gradients ? "--recompute, " : "")}a smaller --batch-size or a shorter --max-length";
}

/// <summary>
/// Puts a loaded model on an accelerator (the CUDA backend lives outside Core and is handed in by the CLI).
/// LoadedModel asks it before loading, so a missing driver fails in milliseconds, not after the weights are read.
/// </summary>
public interface IDeviceBackendFactory
{
    /// <summary>Null when the device can run here; otherwise a one-line reason naming what is missing.</summary>
    string? Unavailable();

    /// <summary>
    /// Loads the checkpoint's weights onto the device, held as `held` (no host copy of the model), after printing
    /// the device memory plan; refuses when it cannot fit. With streaming "on" (or "auto" when the whole model does
    /// not fit the device), only one block at a time goes to the device (a <see cref="Engine.StreamedBackend"/>).
    /// </summary>
    IBackend Create(CheckpointFolder checkpoint, DType held, EngineOptions options, Workload? workload, IProgressSink progress, DeviceStreaming? streaming = null);
}

/// <summary>
/// Layer streaming on a device. Mode: "on", "off" or "auto". Streamed, the host keeps the hidden states (in memory
/// up to HiddenBudget bytes, beyond it in a scratch file in ScratchDir) and one block's widened weights and sums
/// (StreamedHostPlan); in memory, at most gradient sums read back for scoring (InMemoryHostPlan). The plan of the
/// mode chosen must fit HostBudget.
/// </summary>
public sealed record DeviceStreaming(string Mode, long HiddenBudget, string? ScratchDir, Models.MemoryEstimate InMemoryHostPlan,
    Models.MemoryEstimate StreamedHostPlan, long HostBudget)
{
    /// <summary>Refuses, naming the model folder, when the host cannot hold the plan of the chosen mode.</summary>
    public void EnsureHostFits(string modelDir, bool streamed, bool gradients) =>
        (streamed ? StreamedHostPlan : InMemoryHostPlan).EnsureFits(modelDir, HostBudget, streamed
            ? MemoryPolicy.StreamedFix
            : MemoryPolicy.InMemoryFix(Mode, gradients));
}
