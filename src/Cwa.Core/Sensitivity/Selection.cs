namespace Cwa.Core.Sensitivity;

/// <summary>
/// In-place order statistics (Hoare quickselect with median-of-three pivots): expected O(n), so exact
/// percentiles of a 525M-element tensor need no sort and no copy beyond one scratch buffer.
/// </summary>
internal static class Selection
{
    /// <summary>Rearranges a so that a[k] is the k-th smallest, smaller-or-equal values before it, greater-or-equal after.</summary>
    public static float Select(Span<float> a, int k)
    {
        int lo = 0, hi = a.Length - 1;
        while (hi > lo)
        {
            if (hi - lo < 16)
            {
                a[lo..(hi + 1)].Sort();
                return a[k];
            }
            int mid = lo + (hi - lo) / 2;
            if (a[mid] < a[lo]) (a[mid], a[lo]) = (a[lo], a[mid]);
            if (a[hi] < a[lo]) (a[hi], a[lo]) = (a[lo], a[hi]);
            if (a[hi] < a[mid]) (a[hi], a[mid]) = (a[mid], a[hi]);
            float pivot = a[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return a[k];
        }
        return a[k];
    }

    /// <summary>numpy.percentile's default 'linear' method on the (unsorted, reordered in place) values.</summary>
    public static void Percentiles(Span<float> a, ReadOnlySpan<double> percents, Span<double> results)
    {
        // Ascending percentiles let each selection run on the part right of the previous one.
        int n = a.Length, start = 0;
        for (int p = 0; p < percents.Length; p++)
        {
            double pos = percents[p] / 100.0 * (n - 1);
            int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, n - 1);
            float vLo = Select(a[start..], lo - start);
            start = lo;
            float vHi = hi == lo ? vLo : MinOf(a[(lo + 1)..]);
            results[p] = vLo + (vHi - (double)vLo) * (pos - lo);
        }
    }

    private static float MinOf(ReadOnlySpan<float> a)
    {
        float m = float.PositiveInfinity;
        foreach (float v in a) if (v < m) m = v;
        return m;
    }
}
