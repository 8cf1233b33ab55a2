using Cwa.Core;
using Cwa.Core.Models;

namespace Cwa.Cuda.Engine;

/// <summary>
/// Device bytes a run needs: weights in their storage format (1-D tensors fp32), fp32 gradients, the activations
/// a forward/backward keeps and the scratch it reuses (counted by building the workspace without allocating).
/// </summary>
public sealed record DeviceMemoryPlan(string Device, long Weights, long Gradients, long Activations, long Workspace, long Available)
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

    public string Describe() =>
        $"device memory plan on {Device}: weights {MemoryEstimate.Format(Weights)}, gradients {MemoryEstimate.Format(Gradients)}, " +
        $"activations {MemoryEstimate.Format(Activations)}, workspace {MemoryEstimate.Format(Workspace)}; total {MemoryEstimate.Format(Total)}" +
        (Available is > 0 and < 1L << 50 ? $" of {MemoryEstimate.Format(Available)}" : "");

    public void EnsureFits()
    {
        if (Available <= 0 || Total + Reserve <= Available) return;
        throw new InputException($"--device cuda: the run needs about {MemoryEstimate.Format(Total)} on {Device} (weights {MemoryEstimate.Format(Weights)}, " +
            $"gradients {MemoryEstimate.Format(Gradients)}, activations {MemoryEstimate.Format(Activations)}, workspace {MemoryEstimate.Format(Workspace)}) " +
            $"but it has {MemoryEstimate.Format(Available)}; try --recompute, a smaller --batch-size or a shorter --max-length");
    }
}
