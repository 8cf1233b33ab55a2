namespace Cwa.Core.Perturbation;

/// <summary>The original values of exactly the weights a perturbation touched, so they can be put back.</summary>
public sealed record PerturbationSnapshot(IReadOnlyList<TensorSelection> Touched, IReadOnlyList<float[]> Originals)
{
    public long Count => Touched.Sum(t => (long)t.FlatIndices.Length);
}
