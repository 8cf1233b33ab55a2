namespace Cwa.Core.Perturbation;

/// <summary>The weights of one tensor chosen for perturbation (flat row-major indices).</summary>
public sealed record TensorSelection(int TensorIndex, long[] FlatIndices);
