using Cwa.Core.Models;
using Cwa.Core.Perturbation;

namespace Cwa.Core.Ranking;

/// <summary>Uniform sample of exactly count distinct flat indices (Robert Floyd's algorithm), seeded per tensor.</summary>
public static class RandomKSelector
{
    public static long[] Select(long n, int count, ulong seed, int tensorIndex)
    {
        count = (int)Math.Min(count, n);
        var rng = SplitMix64.For(seed, tensorIndex, 0x52414E44);
        var chosen = new HashSet<long>(count);
        for (long j = n - count; j < n; j++)
        {
            long t = rng.NextLong(j + 1);
            if (!chosen.Add(t)) chosen.Add(j);
        }
        var result = chosen.ToArray();
        Array.Sort(result);
        return result;
    }

    /// <summary>The random_k control of a set: in every tensor, as many seeded uniform draws as the set took there.</summary>
    public static List<TensorSelection> Matching(IReadOnlyList<ParameterSpec> specs, IReadOnlyList<TensorSelection> set, int seed) =>
        set.Select(t => new TensorSelection(t.TensorIndex, Select(specs[t.TensorIndex].NumElements, t.FlatIndices.Length, (ulong)seed, t.TensorIndex))).ToList();
}
