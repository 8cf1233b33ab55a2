namespace Cwa.Core.Checkpoints;

/// <summary>Read access to named tensors, converted on demand from their stored dtype.</summary>
public interface ITensorSource
{
    bool Contains(string name);
    /// <summary>Stored shape of a tensor; throws InputException naming the file when absent.</summary>
    long[] Shape(string name);
    DType StoredType(string name);
    /// <summary>Converts the whole tensor into destination (length = element count).</summary>
    void Read(string name, Span<float> destination);
    void Read(string name, Span<double> destination);
}
