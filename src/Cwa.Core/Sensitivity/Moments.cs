using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Cwa.Core.Sensitivity;

/// <summary>
/// The two passes of a tensor's exact statistics over one chunk of scores, 8 doubles at a time: one double sum
/// per lane, folded in lane order at the end, so the result is the same on every run. Summing into one scalar
/// double was a chain of dependent adds, 4 cycles a score: a third of scoring an 8B model.
/// </summary>
internal static class Moments
{
    /// <summary>Sum (NaN if any score is NaN), min and max (NaN skipped), and the counts of zeros and NaNs.</summary>
    public static (double Sum, double Min, double Max, long Zeros, long NaNs) First(ReadOnlySpan<float> x)
    {
        var (sumLo, sumHi) = (Vector512<double>.Zero, Vector512<double>.Zero);
        var min = Vector512.Create(float.PositiveInfinity);
        var max = Vector512.Create(float.NegativeInfinity);
        long zeros = 0, nans = 0;
        int i = 0, width = Vector512<float>.Count;
        ref float first = ref MemoryMarshal.GetReference(x);
        for (; i + width <= x.Length; i += width)
        {
            var v = Vector512.LoadUnsafe(ref first, (nuint)i);
            var (lo, hi) = Vector512.Widen(v);
            sumLo += lo;
            sumHi += hi;
            // Comparisons with NaN are false, so NaN never replaces a min or max (as the scalar v < min did).
            min = Vector512.ConditionalSelect(Vector512.LessThan(v, min), v, min);
            max = Vector512.ConditionalSelect(Vector512.GreaterThan(v, max), v, max);
            zeros += BitOperations.PopCount(Vector512.Equals(v, Vector512<float>.Zero).ExtractMostSignificantBits());
            nans += BitOperations.PopCount((~Vector512.Equals(v, v)).ExtractMostSignificantBits());
        }
        double sum = 0, mn = double.PositiveInfinity, mx = double.NegativeInfinity;
        for (int l = 0; l < Vector512<double>.Count; l++) sum += sumLo[l] + sumHi[l];
        for (int l = 0; l < width; l++)
        {
            if (min[l] < mn) mn = min[l];
            if (max[l] > mx) mx = max[l];
        }
        for (; i < x.Length; i++)
        {
            float v = x[i];
            sum += v;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
            if (v == 0) zeros++;
            if (float.IsNaN(v)) nans++;
        }
        return (sum, mn, mx, zeros, nans);
    }

    /// <summary>Sums of (x - mean)^2, ^3, ^4 and of x^2.</summary>
    public static (double M2, double M3, double M4, double SumSq) Central(ReadOnlySpan<float> x, double mean)
    {
        Vector512<double> m2 = default, m3 = default, m4 = default, sq = default;
        var mu = Vector512.Create(mean);
        int i = 0, width = Vector512<double>.Count;
        ref float first = ref MemoryMarshal.GetReference(x);
        for (; i + 2 * width <= x.Length; i += 2 * width)
        {
            var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref first, (nuint)i));
            Add(lo, mu, ref m2, ref m3, ref m4, ref sq);
            Add(hi, mu, ref m2, ref m3, ref m4, ref sq);
        }
        double s2 = Vector512.Sum(m2), s3 = Vector512.Sum(m3), s4 = Vector512.Sum(m4), ss = Vector512.Sum(sq);
        for (; i < x.Length; i++)
        {
            double v = x[i], d = v - mean, d2 = d * d;
            s2 += d2;
            s3 += d2 * d;
            s4 += d2 * d2;
            ss += v * v;
        }
        return (s2, s3, s4, ss);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(Vector512<double> v, Vector512<double> mu, ref Vector512<double> m2, ref Vector512<double> m3, ref Vector512<double> m4, ref Vector512<double> sq)
    {
        var d = v - mu;
        var d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
        sq += v * v;
    }
}
