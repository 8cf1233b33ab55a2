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
}
