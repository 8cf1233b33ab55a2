using Cwa.Core.Engine;
using Cwa.Core.Perturbation;

namespace Cwa.Core.Ranking;

/// <summary>
/// random_k_matched: random weights of the same tensors whose |W| distribution matches the top set's, so a top-k
/// effect cannot be explained by magnitude alone. Each tensor's |W| is cut into Strata quantile bins (bounds from a
/// seeded sample of up to 100,000 weights); for every top weight, one random weight of the same bin is drawn (none
/// from the top set, no repeats). Each tensor is read once for all draws.
/// </summary>
public static class MatchedRandomSelector
{
    public const int Strata = 20;
    private const int SampleSize = 100_000;

    public static List<List<TensorSelection>> Draws(IBackend backend, IReadOnlyList<TensorSelection> top, IReadOnlyList<int> seeds)
    {
        var draws = seeds.Select(_ => new List<TensorSelection>()).ToList();
        foreach (var sel in top)
        {
            var w = new float[backend.Specs[sel.TensorIndex].NumElements];
            backend.ReadWeight(sel.TensorIndex, w);
            for (int d = 0; d < seeds.Count; d++)
                draws[d].Add(new TensorSelection(sel.TensorIndex, Select(w, sel.FlatIndices, (ulong)seeds[d], sel.TensorIndex)));
        }
        return draws;
    }

    /// <summary>As many weights as top holds, each from the |W| bin of one top weight, sorted.</summary>
    public static long[] Select(float[] w, long[] top, ulong seed, int tensorIndex)
    {
        long n = w.Length;
        var rng = SplitMix64.For(seed, tensorIndex, 0x4D415443);
        var bounds = Bounds(w, ref rng);
        var excluded = new HashSet<long>(top);
        var chosen = new List<long>(top.Length);
        foreach (long t in top)
        {
            int bin = Bin(bounds, Math.Abs(w[t]));
            long pick = -1;
            // Each bin holds about 1/Strata of the tensor, so a uniform draw lands in it every Strata tries on average.
            for (int tries = 0; tries < 1000 * Strata && pick < 0; tries++)
            {
                long c = rng.NextLong(n);
                if (Bin(bounds, Math.Abs(w[c])) == bin && !excluded.Contains(c)) pick = c;
            }
            // A bin of heavily tied values can be nearly exhausted: take the first free member in index order.
            for (long c = 0; c < n && pick < 0; c++)
                if (Bin(bounds, Math.Abs(w[c])) == bin && !excluded.Contains(c)) pick = c;
            if (pick < 0) continue; // the bin is all top weights: nothing comparable is left
            excluded.Add(pick);
            chosen.Add(pick);
        }
        var result = chosen.ToArray();
        Array.Sort(result);
        return result;
    }

    private static float[] Bounds(float[] w, ref SplitMix64 rng)
    {
        int m = (int)Math.Min(SampleSize, w.Length);
        var sample = new float[m];
        for (int i = 0; i < m; i++) sample[i] = Math.Abs(w[m == w.Length ? i : rng.NextLong(w.Length)]);
        Array.Sort(sample);
        var bounds = new float[Strata - 1];
        for (int s = 1; s < Strata; s++) bounds[s - 1] = sample[(int)((long)s * (m - 1) / Strata)];
        return bounds;
    }

    /// <summary>The bin of |w|: the number of bounds strictly below it.</summary>
    private static int Bin(float[] bounds, float a)
    {
        int lo = 0, hi = bounds.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (bounds[mid] < a) lo = mid + 1; else hi = mid;
        }
        return lo;
    }
}
