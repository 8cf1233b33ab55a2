using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>
/// The whole forward and backward of a model big enough for the packed SGEMM path (rows and columns split between
/// threads, edge tiles, the loss head's wide product), on each micro-kernel this machine runs: gradients agree with
/// the double-precision engine and do not change by a bit with the GEMM thread count.
/// </summary>
public class MicroKernelEngineTests
{
    public static TheoryData<string> Kernels => KernelCases.Names();

    [Theory]
    [MemberData(nameof(Kernels))]
    public void GradientsMatchDoublePrecisionAndDoNotDependOnThreads(string kernel)
    {
        var config = TinyModels.Config(bias: true) with { HiddenSize = 64, IntermediateSize = 160, HeadDim = 16, VocabSize = 400 };
        var batch = TinyModels.Make([40, 33, 17, 40], 5, vocab: 400);
        var wd = ModelWeights<double>.Random(config, 8, 0.1);
        var gd = wd.ZerosLike();
        double lossD = new LlamaModel<double>(wd).ForwardBackward(batch, gd);

        using var selected = KernelCases.Use(kernel);
        var wf = ModelWeights<float>.Random(config, 8, 0.1);
        int saved = Gemm.MaxThreads;
        try
        {
            float[][]? first = null;
            foreach (int threads in new[] { 1, 2 })
            {
                Gemm.MaxThreads = threads;
                var gf = wf.ZerosLike();
                double lossF = new LlamaModel<float>(wf, new EngineOptions(threads)).ForwardBackward(batch, gf);
                Assert.True(Math.Abs(lossF - lossD) <= 1e-5 * Math.Abs(lossD), $"{kernel}: loss {lossF} against {lossD} in double");
                for (int t = 0; t < gf.Count; t++)
                {
                    double scale = gd[t].Max(Math.Abs), worst = 0;
                    for (int i = 0; i < gf[t].Length; i++) worst = Math.Max(worst, Math.Abs(gf[t][i] - gd[t][i]));
                    Assert.True(worst <= 1e-4 * scale, $"{kernel}: tensor {t} differs from double by {worst:E2} (largest gradient {scale:E2})");
                }
                if (first == null) first = Enumerable.Range(0, gf.Count).Select(t => gf[t]).ToArray();
                else for (int t = 0; t < gf.Count; t++) Assert.Equal(first[t], gf[t]);
            }
        }
        finally { Gemm.MaxThreads = saved; }
    }
}
