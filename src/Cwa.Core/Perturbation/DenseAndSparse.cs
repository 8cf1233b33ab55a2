namespace Cwa.Core.Perturbation;

/// <summary>
/// The two weight sets of the dense-and-sparse experiment: every weight of the given 2-D tensors, and the same less
/// the kept (top-k) weights. Built per tensor from sorted indices, so no set of (tensor, index) pairs is materialised.
/// </summary>
public static class DenseAndSparse
{
    public static (List<TensorSelection> All, List<TensorSelection> AllButKept) Sets(IEnumerable<(int Tensor, long Count)> tensors, IReadOnlyList<TensorSelection> kept)
    {
        var list = tensors.ToList();
        return (list.Select(t => new TensorSelection(t.Tensor, Complement(t.Count, []))).ToList(), AllBut(list, kept));
    }

    /// <summary>Every weight of the tensors except the kept ones (the other half of Sets, without building the full set).</summary>
    public static List<TensorSelection> AllBut(IEnumerable<(int Tensor, long Count)> tensors, IReadOnlyList<TensorSelection> kept)
    {
        var keptBy = kept.ToDictionary(k => k.TensorIndex, k => k.FlatIndices);
        return tensors.Select(t => new TensorSelection(t.Tensor, Complement(t.Count, keptBy.GetValueOrDefault(t.Tensor, [])))).ToList();
    }

    /// <summary>0..n-1 without the given indices (sorted ascending, each below n).</summary>
    public static long[] Complement(long n, long[] sortedKept)
    {
        int distinct = 0;
        for (int i = 0; i < sortedKept.Length; i++)
            if (i == 0 || sortedKept[i] != sortedKept[i - 1]) distinct++;
        var result = new long[n - distinct];
        long o = 0;
        int j = 0;
        for (long i = 0; i < n; i++)
        {
            while (j < sortedKept.Length && sortedKept[j] < i) j++;
            if (j < sortedKept.Length && sortedKept[j] == i) continue;
            result[o++] = i;
        }
        return result;
    }
}
