using Cwa.Core;
using Cwa.Core.Models;

namespace Cwa.Cuda.Engine;

/// <summary>
/// Device bytes a run needs: weights in their storage format (1-D tensors fp32), fp32 gradients, the activations
/// a forward/backward keeps and the scratch it reuses (counted by building the workspace without allocating).
/// </summary>
public sealed record DeviceMemoryPlan(string Device, long Weights, long Gradients, long Activations, long Workspace, long Available, bool Streamed = false)
{
    // cuBLAS workspaces, ILGPU's kernels and the CUDA context itself take some memory beyond our buffers.
    public const long Reserve = 1L << 30;

    public long Total => Weights + Gradients + Activations + Workspace;

    public static DeviceMemoryPlan For(string device, ModelConfig c, StorageFormat format, WorkspaceShape shape, long available)
    {
        long weights = 0, grads = 0;
        foreach (var s in LlamaLayout.Parameters(c))
        {
            weights += s.NumElements * (s.Is2D ? format.Bytes() : 4);
            grads += s.NumElements * 4;
        }
        var ws = new DeviceWorkspace(null, c, shape, format != StorageFormat.F32);
        // Gradient metrics are scored on the device, in one buffer the size of the largest tensor.
        long scoring = shape.Backward ? DeviceScorer.Bytes(c) : 0;
        return new DeviceMemoryPlan(device, weights, shape.Backward ? grads : 0, ws.ActivationBytes, ws.ScratchBytes + scoring, available);
    }

    /// <summary>
    /// Layer streaming on the device: the 1-D tensors, then at most one block's matrices and gradient sums, or lm_head's
    /// (with the last block's matrices while a forward pass reaches the head), plus one block's workspace. The peak
    /// phase is reported. Gradient sums are tripled for per-batch metrics (batch buffer, sum, sum of squares).
    /// </summary>
    public static DeviceMemoryPlan ForStreaming(string device, ModelConfig c, StorageFormat format, WorkspaceShape shape, bool perBatch, long available)
    {
        var specs = LlamaLayout.Parameters(c);
        long small = specs.Where(s => !s.Is2D).Sum(s => s.NumElements) * 4;
        long blockWeights = specs.Where(s => s.Block == 0 && s.Is2D).Sum(s => s.NumElements) * format.Bytes();
        long blockSums = specs.Where(s => s.Block == 0).Sum(s => s.NumElements) * 4 * (perBatch ? 3 : 1);
        long headElements = (long)c.VocabSize * c.HiddenSize;
        long headWeights = headElements * format.Bytes(), headSums = (headElements + c.HiddenSize) * 4 * (perBatch ? 3 : 1);
        (long W, long G)[] phases = shape.Backward
            ? [(blockWeights + headWeights, 0), (blockWeights, blockSums), (headWeights, headSums)]
            : [(blockWeights + headWeights, 0)];
        var peak = phases.MaxBy(p => p.W + p.G);
        var ws = new DeviceWorkspace(null, c, shape with { Streamed = true }, format != StorageFormat.F32);
        return new DeviceMemoryPlan(device, small + peak.W, peak.G, ws.ActivationBytes, ws.ScratchBytes, available, Streamed: true);
    }

    public string Describe() =>
        $"device memory plan{(Streamed ? " (layer streaming)" : "")} on {Device}: weights {MemoryEstimate.Format(Weights)}, gradients {MemoryEstimate.Format(Gradients)}, " +
        $"activations {MemoryEstimate.Format(Activations)}, workspace {MemoryEstimate.Format(Workspace)}; total {MemoryEstimate.Format(Total)}" +
        (Available is > 0 and < 1L << 50 ? $" of {MemoryEstimate.Format(Available)}" : "");

    public bool Fits => Available <= 0 || Total + Reserve <= Available;

    public void EnsureFits()
    {
        if (Fits) return;
        throw new InputException($"--device cuda: the run needs about {MemoryEstimate.Format(Total)} on {Device} (weights {MemoryEstimate.Format(Weights)}, " +
            $"gradients {MemoryEstimate.Format(Gradients)}, activations {MemoryEstimate.Format(Activations)}, workspace {MemoryEstimate.Format(Workspace)}) " +
            $"but it has {MemoryEstimate.Format(Available)}; try " + (Streamed ? "a smaller --batch-size or a shorter --max-length" : "--streaming on (one block on the device at a time), --recompute, a smaller --batch-size or a shorter --max-length"));
    }
}
