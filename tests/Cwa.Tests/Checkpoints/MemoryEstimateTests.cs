using Cwa.Core;
using Cwa.Core.Models;

namespace Cwa.Tests.Checkpoints;

public class MemoryEstimateTests
{
    [Fact]
    public void EightBillionOnA24GiBMachineIsRefusedWithTheNumbersAndAFix()
    {
        var c = TestModelPresets.Config("llama-3.1-8b-shape", 128256);
        var m = MemoryEstimate.ForAnalysis(c, batch: 8, seqLen: 256);
        Assert.Equal(8_030_261_248L * 4, m.Weights);
        Assert.Equal(m.Weights, m.Gradients);
        var e = Assert.Throws<CwaException>(() => m.EnsureFits("/models/llama", 24L << 30));
        Assert.Contains("/models/llama: an analyze run needs about", e.Message);
        Assert.Contains("--recompute", e.Message);
        Assert.Equal(1, e.ExitCode);
    }

    [Fact]
    public void RecomputeAndForwardOnlyNeedLess()
    {
        var c = TestModelPresets.Config("small", 8192);
        var full = MemoryEstimate.ForAnalysis(c, 8, 512);
        Assert.True(MemoryEstimate.ForAnalysis(c, 8, 512, recompute: true).Activations < full.Activations / 3);
        Assert.Equal(0, MemoryEstimate.ForAnalysis(c, 8, 512, needGradients: false).Gradients);
        full.EnsureFits("x", 64L << 30);
    }
}
