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
