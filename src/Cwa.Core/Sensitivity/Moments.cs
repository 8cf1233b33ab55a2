using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Cwa.Core.Sensitivity;

/// <summary>
/// The two passes of a tensor's exact statistics over one chunk of scores, a vector of doubles at a time (the
/// machine's width: AVX2 and AVX-512 alike): one double sum per lane, folded in lane order at the end, so the result
/// is the same on every run. Summing into one scalar double was a chain of dependent adds, 4 cycles a score.
/// </summary>
internal static class Moments
{
    /// <summary>Sum (NaN if any score is NaN), min and max (NaN skipped), and the counts of zeros and NaNs.</summary>
    public static (double Sum, double Min, double Max, long Zeros, long NaNs) First(ReadOnlySpan<float> x)
    {
        var (sumLo, sumHi) = (Vector<double>.Zero, Vector<double>.Zero);
        var min = new Vector<float>(float.PositiveInfinity);
        var max = new Vector<float>(float.NegativeInfinity);
        // Comparison masks are -1 per matching lane: these count down.
        var (zeroMask, nanMask) = (Vector<int>.Zero, Vector<int>.Zero);
        int i = 0, width = Vector<float>.Count;
        ref float first = ref MemoryMarshal.GetReference(x);
        for (; i + width <= x.Length; i += width)
        {
            var v = Vector.LoadUnsafe(ref first, (nuint)i);
            Vector.Widen(v, out var lo, out var hi);
            sumLo += lo;
            sumHi += hi;
            // Comparisons with NaN are false, so NaN never replaces a min or max (as the scalar v < min did).
            min = Vector.ConditionalSelect(Vector.LessThan(v, min), v, min);
            max = Vector.ConditionalSelect(Vector.GreaterThan(v, max), v, max);
            zeroMask += Vector.Equals(v, Vector<float>.Zero);
            nanMask += ~Vector.Equals(v, v);
        }
        double sum = 0, mn = double.PositiveInfinity, mx = double.NegativeInfinity;
        long zeros = 0, nans = 0;
        for (int l = 0; l < Vector<double>.Count; l++) sum += sumLo[l] + sumHi[l];
        for (int l = 0; l < width; l++)
        {
            if (min[l] < mn) mn = min[l];
            if (max[l] > mx) mx = max[l];
            zeros -= zeroMask[l];
            nans -= nanMask[l];
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
        Vector<double> m2 = default, m3 = default, m4 = default, sq = default;
        var mu = new Vector<double>(mean);
        int i = 0, width = Vector<float>.Count;
        ref float first = ref MemoryMarshal.GetReference(x);
        for (; i + width <= x.Length; i += width)
        {
            Vector.Widen(Vector.LoadUnsafe(ref first, (nuint)i), out var lo, out var hi);
            Add(lo, mu, ref m2, ref m3, ref m4, ref sq);
            Add(hi, mu, ref m2, ref m3, ref m4, ref sq);
        }
        double s2 = Vector.Sum(m2), s3 = Vector.Sum(m3), s4 = Vector.Sum(m4), ss = Vector.Sum(sq);
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
    private static void Add(Vector<double> v, Vector<double> mu, ref Vector<double> m2, ref Vector<double> m3, ref Vector<double> m4, ref Vector<double> sq)
    {
        var d = v - mu;
        var d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
        sq += v * v;
    }
}
