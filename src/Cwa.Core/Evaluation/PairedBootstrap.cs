using Cwa.Core.Engine;

namespace Cwa.Core.Evaluation;

/// <summary>
/// How sure is "the top-k hurt more than the control"? Units are the held-out evaluation batches (one text each in an
/// analyze run), measured on both sides, so the comparison is paired. Difference: the token-weighted mean NLL of the
/// top-k run minus the control's (a control with several draws: the mean over draws, unit by unit). Interval: the
/// 2.5% and 97.5% quantiles of that difference over seeded bootstrap resamples of the units.
/// </summary>
public sealed record PairedDifference(int Units, int Resamples, double MeanNllDifference, double Ci95Low, double Ci95High, double ShareOfUnitsWorse)
{
    public const int DefaultResamples = 2000;

    /// <returns>null when a side is not finite (a diverged run) or the runs do not cover the same units</returns>
    public static PairedDifference? Of(IReadOnlyList<EvalResult> top, IReadOnlyList<IReadOnlyList<EvalResult>> controlDraws, ulong seed, int resamples = DefaultResamples)
    {
        int n = top.Count;
        if (n == 0 || controlDraws.Count == 0 || controlDraws.Any(d => d.Count != n)) return null;
        var diff = new double[n];
        var tokens = new double[n];
        for (int i = 0; i < n; i++)
        {
            double control = controlDraws.Average(d => d[i].SumNll);
            diff[i] = top[i].SumNll - control;
            tokens[i] = top[i].Tokens;
        }
        if (!diff.All(double.IsFinite) || tokens.Sum() == 0) return null;
        double observed = diff.Sum() / tokens.Sum();
        var rng = SplitMix64.For(seed, 0, 0x50414952);
        var stats = new double[resamples];
        for (int b = 0; b < resamples; b++)
        {
            double d = 0, t = 0;
            for (int i = 0; i < n; i++)
            {
                int j = (int)rng.NextLong(n);
                d += diff[j];
                t += tokens[j];
            }
            stats[b] = t > 0 ? d / t : 0;
        }
        Array.Sort(stats);
        double share = Enumerable.Range(0, n).Count(i => diff[i] > 0) / (double)n;
        return new PairedDifference(n, resamples, observed, Quantile(stats, 0.025), Quantile(stats, 0.975), share);
    }

    /// <summary>Linear interpolation between order statistics (numpy's default).</summary>
    private static double Quantile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }
}
