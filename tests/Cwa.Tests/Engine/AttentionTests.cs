using Cwa.Core;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>Blocked causal attention against a direct triple-loop evaluation, with lengths spanning several row blocks.</summary>
public class AttentionTests
{
    [Fact]
    public void ForwardAndBackwardMatchADirectEvaluationAcrossRowBlocks()
    {
        int[] lengths = [150, 64, 65, 1, 0];
        int seq = 150, heads = 4, kvHeads = 2, hd = 8, bsz = lengths.Length, n = bsz * seq, group = heads / kvHeads;
        int qs = heads * hd, ks = kvHeads * hd;
        var r = new SplitMix64(3);
        double[] Rand(int len) => Enumerable.Range(0, len).Select(_ => r.NextGaussian()).ToArray();
        var (q, k, v, dOut) = (Rand(n * qs), Rand(n * ks), Rand(n * ks), Rand(n * qs));
        var att = new Attention<double>(heads, kvHeads, hd, 2);
        var probs = Rand(bsz * heads * seq * seq); // stale values must not leak into the results
        var output = new double[n * qs];
        att.Forward(q, k, v, probs, output, bsz, seq, lengths);
        double[] dq = Rand(q.Length), dk = Rand(k.Length), dv = Rand(v.Length);
        att.Backward(q, k, v, probs, dOut, dq, dk, dv, bsz, seq, lengths);

        double c = 1 / Math.Sqrt(hd);
        double[] eOut = new double[output.Length], eDq = new double[q.Length], eDk = new double[k.Length], eDv = new double[v.Length];
        for (int b = 0; b < bsz; b++)
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / group, len = lengths[b];
                double Q(int t, int d) => q[(b * seq + t) * qs + h * hd + d];
                double K(int t, int d) => k[(b * seq + t) * ks + kvh * hd + d];
                double V(int t, int d) => v[(b * seq + t) * ks + kvh * hd + d];
                double DO(int t, int d) => dOut[(b * seq + t) * qs + h * hd + d];
                for (int t = 0; t < len; t++)
                {
                    var p = new double[t + 1];
                    for (int u = 0; u <= t; u++) p[u] = c * Enumerable.Range(0, hd).Sum(d => Q(t, d) * K(u, d));
                    double max = p.Max(), sum = 0;
                    for (int u = 0; u <= t; u++) sum += p[u] = Math.Exp(p[u] - max);
                    for (int u = 0; u <= t; u++) p[u] /= sum;
                    var dp = new double[t + 1];
                    for (int u = 0; u <= t; u++) dp[u] = Enumerable.Range(0, hd).Sum(d => DO(t, d) * V(u, d));
                    double dot = Enumerable.Range(0, t + 1).Sum(u => p[u] * dp[u]);
                    for (int u = 0; u <= t; u++)
                    {
                        double ds = p[u] * (dp[u] - dot);
                        for (int d = 0; d < hd; d++)
                        {
                            eOut[(b * seq + t) * qs + h * hd + d] += p[u] * V(u, d);
                            eDv[(b * seq + u) * ks + kvh * hd + d] += p[u] * DO(t, d);
                            eDq[(b * seq + t) * qs + h * hd + d] += c * ds * K(u, d);
                            eDk[(b * seq + u) * ks + kvh * hd + d] += c * ds * Q(t, d);
                        }
                    }
                }
            }
        foreach (var (name, e, a) in new[] { ("out", eOut, output), ("dq", eDq, dq), ("dk", eDk, dk), ("dv", eDv, dv) })
            for (int i = 0; i < e.Length; i++)
                Assert.True(Math.Abs(e[i] - a[i]) < 1e-10 * (1 + Math.Abs(e[i])), $"{name}[{i}]: expected {e[i]}, got {a[i]}");
    }
}
