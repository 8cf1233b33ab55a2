using Cwa.Core;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Cuda;

namespace Cwa.Tests.Cuda;

/// <summary>Device kernels on ILGPU's CPU accelerator against the CPU backend's own ops (the reference).</summary>
public sealed class KernelTests : IDisposable
{
    private readonly DeviceContext _device = DeviceContext.CreateCpu();
    private readonly KernelRunner _run;

    public KernelTests() => _run = new KernelRunner(_device);

    public void Dispose() => _device.Dispose();

    private static float[] Rand(ulong seed, int n, double scale = 1)
    {
        var r = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(scale * r.NextGaussian())).ToArray();
    }

    private static void Close(float[] expected, float[] actual, float tol = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])), $"[{i}] expected {expected[i]} got {actual[i]}");
    }

    [Fact]
    public void SwiGluForwardAndBackwardMatchTheCpuBackend()
    {
        int n = 3000;
        var gate = Rand(1, n, 3);
        var up = Rand(2, n);
        var dh = Rand(3, n);
        var hCpu = new float[n];
        var hDev = new float[n];
        SwiGlu<float>.Forward(gate, up, hCpu, 2);
        _run.SwiGluForward(gate, up, hDev);
        Close(hCpu, hDev);
        float[] dgCpu = new float[n], duCpu = new float[n], dgDev = new float[n], duDev = new float[n];
        SwiGlu<float>.Backward(gate, up, dh, dgCpu, duCpu, 2);
        _run.SwiGluBackward(gate, up, dh, dgDev, duDev);
        Close(dgCpu, dgDev);
        Close(duCpu, duDev);
    }

    [Fact]
    public void RmsNormMatchesTheCpuBackend()
    {
        int rows = 37, dim = 96;
        var x = Rand(4, rows * dim, 2);
        var w = Rand(5, dim).Select(v => 1 + 0.1f * v).ToArray();
        float[] yCpu = new float[x.Length], rCpu = new float[rows], yDev = new float[x.Length], rDev = new float[rows];
        RmsNorm<float>.Forward(x, w, yCpu, rCpu, rows, dim, 1e-5, 2);
        _run.RmsNormForward(x, w, yDev, rDev, rows, dim, 1e-5f);
        Close(yCpu, yDev);
        Close(rCpu, rDev);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RopeMatchesTheCpuBackendIncludingLlama3Scaling(bool inverse)
    {
        var config = TestModelPresets.Config("tiny", 512) with { RopeScaling = new RopeScaling("llama3", 8, 1, 4, 8) };
        int seq = 9, rows = 2 * seq, heads = config.NumHeads, half = config.HeadDim / 2;
        var inv = Rope<float>.InverseFrequencies(config);
        var cos = new float[seq * half];
        var sin = new float[seq * half];
        for (int p = 0; p < seq; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = p * (float)inv[i];
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        var x = Rand(6, rows * heads * 2 * half);
        var cpu = (float[])x.Clone();
        new Rope<float>(config, seq).Apply(cpu, rows, seq, heads, inverse, 2);
        _run.Rope(x, cos, sin, rows, seq, heads, half, inverse);
        Close(cpu, x);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void GemmFallbackMatchesTheCpuSgemm(bool ta, bool tb)
    {
        int m = 33, n = 47, k = 29;
        var a = Rand(8, m * k);
        var b = Rand(9, k * n);
        var cCpu = Rand(10, m * n);
        var cDev = (float[])cCpu.Clone();
        int lda = ta ? m : k, ldb = tb ? k : n;
        Gemm.Compute(ta, tb, m, n, k, 0.5f, a, 0, lda, b, 0, ldb, 2f, cCpu, 0, n);
        _run.Gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2f, cDev, n);
        Close(cCpu, cDev, 1e-4f);
    }

    [Fact]
    public void RmsNormBackwardMatchesTheCpuBackend()
    {
        int rows = 21, dim = 40;
        var x = Rand(11, rows * dim, 2);
        var w = Rand(12, dim).Select(v => 1 + 0.1f * v).ToArray();
        var dy = Rand(13, rows * dim);
        var y = new float[x.Length];
        var r = new float[rows];
        RmsNorm<float>.Forward(x, w, y, r, rows, dim, 1e-5, 1);
        float[] dxCpu = Rand(14, rows * dim), dwCpu = Rand(15, dim);
        float[] dxDev = (float[])dxCpu.Clone(), dwDev = (float[])dwCpu.Clone();
        RmsNorm<float>.Backward(x, w, r, dy, dxCpu, dwCpu, rows, dim, 2);
        _run.RmsNormBackward(x, w, r, dy, dxDev, dwDev, rows, dim);
        Close(dxCpu, dxDev, 1e-4f);
        Close(dwCpu, dwDev, 1e-4f);
    }

    [Fact]
    public void CausalGqaAttentionWithPaddingMatchesTheCpuBackend()
    {
        int[] lengths = [7, 4, 1];
        int seq = 7, heads = 4, kvHeads = 2, hd = 8, n = lengths.Length * seq;
        var q = Rand(16, n * heads * hd);
        var k = Rand(17, n * kvHeads * hd);
        var v = Rand(18, n * kvHeads * hd);
        var cpu = new float[n * heads * hd];
        var dev = new float[cpu.Length];
        new Attention<float>(heads, kvHeads, hd, 2).Forward(q, k, v, new float[lengths.Length * heads * seq * seq], cpu, lengths.Length, seq, lengths);
        _run.AttentionForward(q, k, v, dev, lengths, seq, heads, kvHeads, hd);
        Close(cpu, dev, 1e-5f);
    }

    [Fact]
    public void SoftmaxCrossEntropyGivesNllAndTheScaledGradient()
    {
        int rows = 5, vocab = 301;
        var logits = Rand(7, rows * vocab, 3);
        int[] targets = [0, 300, 17, 17, 150];
        float scale = 0.25f;
        var dev = (float[])logits.Clone();
        var nll = _run.SoftmaxCrossEntropy(dev, targets, vocab, scale);
        for (int r = 0; r < rows; r++)
        {
            var z = logits.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
            double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
            Assert.Equal(Math.Log(sum) + max - z[targets[r]], nll[r], 4);
            for (int j = 0; j < vocab; j++)
            {
                double expected = (Math.Exp(z[j] - max) / sum - (j == targets[r] ? 1 : 0)) * scale;
                Assert.True(Math.Abs(expected - dev[r * vocab + j]) < 1e-6, $"row {r} col {j}");
            }
        }
    }
}
