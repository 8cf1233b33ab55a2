using Cwa.Core.Pipeline;

namespace Cwa.Core.Engine;

/// <summary>
/// The operations of a layer-major pass (<see cref="LayerMajorPass"/>) that run where one block's weights are
/// resident: the CPU (<see cref="CpuBlockEngine"/>) or a device. Hidden states cross this interface as host arrays
/// of a batch's packed real rows [rows, hidden]; the pass keeps them between blocks, whichever engine runs them.
/// Gradient sums live in the engine while a block (or the head) is processed and come back as host
/// <see cref="GradientSums"/> when it is complete.
/// </summary>
internal interface IBlockEngine : IDisposable
{
    /// <summary>"cpu", or the device backend's name.</summary>
    string Name { get; }
    /// <summary>The accelerator's name, or null on the CPU.</summary>
    string? DeviceDescription { get; }

    /// <summary>
    /// The host model over the streamed weights: batch preparation, embedding lookup and its backward run on the host
    /// whichever engine holds the blocks (they are gathers and scatters, not products).
    /// </summary>
    LlamaModel<float> Host { get; }

    /// <summary>Allocates one block's work buffers for batches up to this shape.</summary>
    void Reserve(Workload workload);

    /// <summary>Makes block layer's weights resident (the host copy in <see cref="StreamedWeights.Slots"/> included).</summary>
    void LoadBlock(int layer);

    /// <summary>Lets go of every resident block and head buffer (before a phase that needs the memory).</summary>
    void ReleaseBlocks();

    /// <summary>Sees the linear layers' inputs and outputs in forward sweeps (not in the backward's recomputation).</summary>
    IActivationObserver<float>? Observer { get; set; }

    /// <summary>
    /// Values per row a block's forward can keep for its backward so that the backward need not recompute the
    /// block's products (0: this engine always recomputes).
    /// </summary>
    int KeptPerRow { get; }

    /// <summary>x holds the block's input on entry and its output on return; keep (unless empty) receives what the backward reuses.</summary>
    void ForwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, KeptSlot keep);

    /// <summary>Zeroes the gradient sums of block layer's tensors (the block must be loaded).</summary>
    void StartBlockSums(int layer, Accumulation mode);

    /// <summary>
    /// Rebuilds the block's activations from its saved input x (overwritten) and what its forward kept (empty:
    /// recomputes the block), propagates dx (the output's gradient in, the input's out) and adds this batch's weight
    /// gradients to the block's sums (PerBatch: scaled by scale).
    /// </summary>
    void BackwardBlock(int layer, LlamaModel<float>.BatchRows ctx, float[] x, float[] dx, int batch, double scale, KeptSlot kept);

    /// <summary>The block's tensors and their sums over every batch, valid until the next StartBlockSums.</summary>
    IReadOnlyList<(int Tensor, GradientSums Sums)> CompleteBlockSums(int layer);

    /// <summary>Zeroes the sums of lm_head and the final norm.</summary>
    void StartHeadSums(Accumulation mode, double scale);

    /// <summary>
    /// Final norm, lm_head and loss of one batch. With dx (zeroed by the caller), also the backward to the last
    /// block's output into dx, when live(result) says the batch counts: only then are its gradients added to the head
    /// sums (Sum mode: scaled by scale). live is called exactly once when dx is given.
    /// </summary>
    LossHead<float>.Result Head(LlamaModel<float>.BatchRows ctx, float[] x, float[]? dx, int batch, double scale, Func<LossHead<float>.Result, bool>? live);

    /// <summary>lm_head's and the final norm's sums over every batch.</summary>
    (GradientSums Head, GradientSums FinalNorm) CompleteHeadSums();
}
