namespace Cwa.Core.Checkpoints;

/// <summary>One header entry of a safetensors file; offsets are relative to the start of the data section.</summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long DataBegin, long DataEnd)
{
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}
