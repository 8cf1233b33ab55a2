using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;

namespace Cwa.Tests.Engine;

/// <summary>Central finite differences in double precision against the hand-written backward pass.</summary>
public class GradientCheckTests
{
    public static TheoryData<bool, bool, bool, bool, bool> Cases => new()
    {
        // tied, gqa, bias, llama3 rope, padded batch
        { false, true, false, false, false },
        { false, true, false, false, true },
        { true, true, false, false, true },
        { false, false, false, false, true },
        { false, true, true, false, true },
        { true, false, true, true, true },
        { false, true, false, true, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void AnalyticGradientsMatchFiniteDifferences(bool tied, bool gqa, bool bias, bool llama3, bool padded)
    {
        var config = TinyModels.Config(tied, gqa, bias, llama3);
        var weights = ModelWeights<double>.Random(config, seed: 5, std: 0.3);
        var model = new LlamaModel<double>(weights, new EngineOptions(Threads: 2));
        var batch = padded ? TinyModels.Padded() : TinyModels.Single();
        var grads = weights.ZerosLike();
        model.ForwardBackward(batch, grads);

        var rng = new SplitMix64(9);
        double worst = 0;
        string worstAt = "";
        for (int ti = 0; ti < weights.Count; ti++)
        {
            var w = weights[ti];
            var g = grads[ti];
            for (int sample = 0; sample < 12; sample++)
            {
                // Favour entries that carry gradient: embedding rows of unused tokens are exactly zero on both sides.
                long j = rng.NextLong(w.Length);
                double orig = w[j];
                // Fourth-order central stencil: truncation O(h^4) lets h be large enough that roundoff
                // (about eps * loss / h) stays near 1e-13, so even 1e-6-sized gradients are checked tightly.
                double h = 1e-3 * Math.Max(1, Math.Abs(orig));
                double Loss(double delta) { w[j] = orig + delta; return model.ForwardLoss(batch); }
                double numeric = (-Loss(2 * h) + 8 * Loss(h) - 8 * Loss(-h) + Loss(-2 * h)) / (12 * h);
                w[j] = orig;
                double err = Math.Abs(numeric - g[j]) / Math.Max(Math.Abs(numeric) + Math.Abs(g[j]), 1e-6);
                if (err > worst) { worst = err; worstAt = $"{weights.Specs[ti].Name}[{j}] numeric {numeric:E6} analytic {g[j]:E6}"; }
            }
        }
        Assert.True(worst < 1e-6, $"worst relative error {worst:E3} at {worstAt}");
    }

    [Fact]
    public void ScaleMultipliesTheAccumulatedGradient()
    {
        var config = TinyModels.Config();
        var weights = ModelWeights<double>.Random(config, 3, 0.3);
        var model = new LlamaModel<double>(weights);
        var g1 = weights.ZerosLike();
        var g2 = weights.ZerosLike();
        model.ForwardBackward(TinyModels.Padded(), g1, 1.0);
        model.ForwardBackward(TinyModels.Padded(), g2, 0.5);
        model.ForwardBackward(TinyModels.Padded(), g2, 0.5);
        for (int i = 0; i < g1.Count; i++)
            for (int j = 0; j < g1[i].Length; j++)
                Assert.Equal(g1[i][j], g2[i][j], 12);
    }
}
