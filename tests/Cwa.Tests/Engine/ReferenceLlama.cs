using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;

namespace Cwa.Tests.Engine;

/// <summary>
/// A deliberately plain, independent Llama forward pass (scalar loops, double, one sequence at a time, no
/// shared code with the engine) used to check the engine's loss.
/// </summary>
internal static class ReferenceLlama
{
    public static double Loss(ModelWeights<double> w, Batch batch)
    {
        var c = w.Config;
        double total = 0;
        int count = 0;
        for (int b = 0; b < batch.BatchSize; b++)
        {
            int len = batch.Lengths[b];
            var tokens = Enumerable.Range(0, len).Select(t => batch.Token(b, t)).ToArray();
            var logits = Forward(w, c, tokens);
            for (int t = 0; t + 1 < len; t++)
            {
                double max = logits[t].Max();
                double lse = max + Math.Log(logits[t].Sum(z => Math.Exp(z - max)));
                total += lse - logits[t][tokens[t + 1]];
                count++;
            }
        }
        return total / count;
    }

    private static double[][] Forward(ModelWeights<double> w, ModelConfig c, int[] tokens)
    {
        int n = tokens.Length, d = c.HiddenSize, hd = c.HeadDim;
        var emb = w.Get("model.embed_tokens.weight");
        var x = new double[n][];
        for (int t = 0; t < n; t++) x[t] = Enumerable.Range(0, d).Select(j => emb[tokens[t] * d + j]).ToArray();
        double[] invFreq = Enumerable.Range(0, hd / 2).Select(i => 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / hd)).ToArray();
        if (c.RopeScaling is { Type: "llama3" } s)
            for (int i = 0; i < invFreq.Length; i++)
            {
                double wl = 2 * Math.PI / invFreq[i];
                double low = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, high = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                if (wl > low) invFreq[i] /= s.Factor;
                else if (wl >= high)
                {
                    double sm = (s.OriginalMaxPositionEmbeddings / wl - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    invFreq[i] = (1 - sm) * invFreq[i] / s.Factor + sm * invFreq[i];
                }
            }
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var h = x.Select(r => Norm(r, w.Get(p + "input_layernorm.weight"), c.RmsNormEps)).ToArray();
            var q = h.Select(r => Lin(r, w.Get(p + "self_attn.q_proj.weight"), c.QDim, c.AttentionBias ? w.Get(p + "self_attn.q_proj.bias") : null)).ToArray();
            var k = h.Select(r => Lin(r, w.Get(p + "self_attn.k_proj.weight"), c.KvDim, c.AttentionBias ? w.Get(p + "self_attn.k_proj.bias") : null)).ToArray();
            var v = h.Select(r => Lin(r, w.Get(p + "self_attn.v_proj.weight"), c.KvDim, c.AttentionBias ? w.Get(p + "self_attn.v_proj.bias") : null)).ToArray();
            for (int t = 0; t < n; t++)
            {
                Rotate(q[t], c.NumHeads, hd, t, invFreq);
                Rotate(k[t], c.NumKvHeads, hd, t, invFreq);
            }
            var att = new double[n][];
            for (int t = 0; t < n; t++)
            {
                att[t] = new double[c.QDim];
                for (int hh = 0; hh < c.NumHeads; hh++)
                {
                    int kv = hh / (c.NumHeads / c.NumKvHeads);
                    var scores = new double[t + 1];
                    for (int u = 0; u <= t; u++)
                        for (int i = 0; i < hd; i++) scores[u] += q[t][hh * hd + i] * k[u][kv * hd + i] / Math.Sqrt(hd);
                    double m = scores.Max();
                    var e = scores.Select(z => Math.Exp(z - m)).ToArray();
                    double sum = e.Sum();
                    for (int u = 0; u <= t; u++)
                        for (int i = 0; i < hd; i++) att[t][hh * hd + i] += e[u] / sum * v[u][kv * hd + i];
                }
            }
            for (int t = 0; t < n; t++)
            {
                var o = Lin(att[t], w.Get(p + "self_attn.o_proj.weight"), d, null);
                for (int j = 0; j < d; j++) x[t][j] += o[j];
                var h2 = Norm(x[t], w.Get(p + "post_attention_layernorm.weight"), c.RmsNormEps);
                var gate = Lin(h2, w.Get(p + "mlp.gate_proj.weight"), c.IntermediateSize, null);
                var up = Lin(h2, w.Get(p + "mlp.up_proj.weight"), c.IntermediateSize, null);
                var act = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
                var down = Lin(act, w.Get(p + "mlp.down_proj.weight"), d, null);
                for (int j = 0; j < d; j++) x[t][j] += down[j];
            }
        }
        var head = c.TieWordEmbeddings ? emb : w.Get("lm_head.weight");
        return x.Select(r => Lin(Norm(r, w.Get("model.norm.weight"), c.RmsNormEps), head, c.VocabSize, null)).ToArray();
    }

    private static double[] Norm(double[] x, double[] w, double eps)
    {
        double ms = x.Sum(v => v * v) / x.Length;
        double r = 1 / Math.Sqrt(ms + eps);
        return x.Select((v, i) => v * r * w[i]).ToArray();
    }

    private static double[] Lin(double[] x, double[] w, int outDim, double[]? bias)
    {
        var y = new double[outDim];
        for (int o = 0; o < outDim; o++)
        {
            double s = bias?[o] ?? 0;
            for (int i = 0; i < x.Length; i++) s += w[o * x.Length + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    private static void Rotate(double[] v, int heads, int hd, int pos, double[] invFreq)
    {
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd / 2; i++)
            {
                double a = (float)pos * (float)invFreq[i];
                a = (float)a;
                double cos = Math.Cos((float)a), sin = Math.Sin((float)a);
                double x1 = v[h * hd + i], x2 = v[h * hd + i + hd / 2];
                v[h * hd + i] = x1 * cos - x2 * sin;
                v[h * hd + i + hd / 2] = x2 * cos + x1 * sin;
            }
    }
}
