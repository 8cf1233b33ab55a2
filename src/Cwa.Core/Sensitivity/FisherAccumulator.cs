using System.Numerics.Tensors;

namespace Cwa.Core.Sensitivity;

/// <summary>Empirical Fisher diagonal: per tensor, the sum over batches of the squared per-batch gradient.</summary>
public sealed class FisherAccumulator
{
    private readonly float[]?[] _sums;

    public FisherAccumulator(int tensorCount) => _sums = new float[tensorCount][];

    /// <summary>Continues from saved sums (resuming an interrupted run).</summary>
    public FisherAccumulator(float[]?[] sums) => _sums = sums;

    public float[]?[] Sums => _sums;

    public void Add(int tensorIndex, ReadOnlySpan<float> batchGradient)
    {
        var sum = _sums[tensorIndex] ??= new float[batchGradient.Length];
        TensorPrimitives.MultiplyAdd(batchGradient, batchGradient, sum, sum);
    }

    public float[]? Get(int tensorIndex) => _sums[tensorIndex];
}
