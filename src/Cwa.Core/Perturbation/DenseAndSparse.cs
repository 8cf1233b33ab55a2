namespace Cwa.Core.Perturbation;

/// <summary>
/// The two weight sets of the dense-and-sparse experiment: every weight of the given 2-D tensors, and the same less
/// the kept (top-k) weights. Built per tensor from sorted indices, so no set of (tensor, index) pairs is materialised.
/// </summary>
public static class DenseAndSparse
{
    public static (List<TensorSelection> All, List<TensorSelection> AllButKept) Sets(IEnumerable<(int Tensor, long Count)> tensors, IReadOnlyList<TensorSelection> kept)
    {
        var keptBy = kept.ToDictionary(k => k.TensorIndex, k => k.FlatIndices);
        var all = new List<TensorSelection>();
        var rest = new List<TensorSelection>();
        foreach (var (t, n) in tensors)
        {
            var every = new long[n];
            for (long i = 0; i < n; i++) every[i] = i;
            all.Add(new TensorSelection(t, every));
            rest.Add(new TensorSelection(t, Complement(n, keptBy.GetValueOrDefault(t, []))));
        }
        return (all, rest);
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
