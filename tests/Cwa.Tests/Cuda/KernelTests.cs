using Cwa.Core;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Cuda;
using Cwa.Cuda.Engine;

namespace Cwa.Tests.Cuda;

/// <summary>Device kernels on ILGPU's CPU accelerator against the CPU backend's own ops (the reference).</summary>
public sealed class KernelTests : AcceleratorTest
{
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
        Run.SwiGluForward(gate, up, hDev);
        Close(hCpu, hDev);
        float[] dgCpu = new float[n], duCpu = new float[n], dgDev = new float[n], duDev = new float[n];
        SwiGlu<float>.Backward(gate, up, dh, dgCpu, duCpu, 2);
        Run.SwiGluBackward(gate, up, dh, dgDev, duDev);
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
        Run.RmsNormForward(x, w, yDev, rDev, rows, dim, 1e-5f);
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
        Run.Rope(x, cos, sin, rows, seq, heads, half, inverse);
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
        Run.Gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2f, cDev, n);
        Close(cCpu, cDev, 1e-4f);
    }

    [Theory]
    [InlineData(StorageFormat.Bf16, false, true)]
    [InlineData(StorageFormat.F16, true, false)]
    public void GemmFallbackOnHalfOperandsEqualsFp32ProductsOfTheRoundedValues(StorageFormat format, bool ta, bool tb)
    {
        int m = 19, n = 23, k = 37;
        var a = Rand(30, m * k).Select(v => Round(v, format)).ToArray();
        var b = Rand(31, k * n).Select(v => Round(v, format)).ToArray();
        var cCpu = new float[m * n];
        int lda = ta ? m : k, ldb = tb ? k : n;
        Gemm.Compute(ta, tb, m, n, k, 1f, a, 0, lda, b, 0, ldb, 0f, cCpu, 0, n);
        var ah = Run.Up(new ushort[a.Length]);
        var bh = Run.Up(new ushort[b.Length]);
        Run.Ops.ToHalf(Run.Up(a), ah, format, a.Length);
        Run.Ops.ToHalf(Run.Up(b), bh, format, b.Length);
        var c = Run.Up(Rand(32, m * n));
        Run.FallbackGemm.Gemm(ta, tb, m, n, k, 1f, Operand.Half(ah, format, 0, lda), Operand.Half(bh, format, 0, ldb), 0f, c, 0, n);
        Close(cCpu, KernelRunner.Down(c, m * n), 1e-5f);
    }

    private static float Round(float v, StorageFormat f)
    {
        var x = new[] { v };
        Cwa.Core.Checkpoints.DTypeConversion.RoundTo(x, f == StorageFormat.Bf16 ? Cwa.Core.Checkpoints.DType.BF16 : Cwa.Core.Checkpoints.DType.F16);
        return x[0];
    }

    [Fact]
    public void RmsNormBackwardMatchesTheCpuBackend()
    {
        int rows = 150, dim = 40; // more rows than one column-sum chunk (64)
        var x = Rand(11, rows * dim, 2);
        var w = Rand(12, dim).Select(v => 1 + 0.1f * v).ToArray();
        var dy = Rand(13, rows * dim);
        var y = new float[x.Length];
        var r = new float[rows];
        RmsNorm<float>.Forward(x, w, y, r, rows, dim, 1e-5, 1);
        float[] dxCpu = Rand(14, rows * dim), dwCpu = Rand(15, dim);
        float[] dxDev = (float[])dxCpu.Clone(), dwDev = (float[])dwCpu.Clone();
        RmsNorm<float>.Backward(x, w, r, dy, dxCpu, dwCpu, rows, dim, 2);
        Run.RmsNormBackward(x, w, r, dy, dxDev, dwDev, rows, dim);
        Close(dxCpu, dxDev, 1e-4f);
        Close(dwCpu, dwDev, 1e-4f);
    }

    [Theory]
    [InlineData(4, 2)]
    [InlineData(4, 4)]
    [InlineData(6, 2)]
    public void CausalAttentionWithPaddingForwardAndBackwardMatchTheCpuBackend(int heads, int kvHeads)
    {
        int[] lengths = [7, 4, 1, 0];
        int seq = 7, hd = 8, bsz = lengths.Length, n = bsz * seq;
        var q = Rand(16, n * heads * hd);
        var k = Rand(17, n * kvHeads * hd);
        var v = Rand(18, n * kvHeads * hd);
        var dOut = Rand(19, n * heads * hd);
        var cpu = new Attention<float>(heads, kvHeads, hd, 2);
        var probs = new float[bsz * heads * seq * seq];
        var outCpu = new float[n * heads * hd];
        cpu.Forward(q, k, v, probs, outCpu, bsz, seq, lengths);
        float[] dqCpu = new float[q.Length], dkCpu = new float[k.Length], dvCpu = new float[v.Length];
        cpu.Backward(q, k, v, probs, dOut, dqCpu, dkCpu, dvCpu, bsz, seq, lengths);

        var dev = new DeviceAttention(Run.FallbackGemm, Run.Ops, heads, kvHeads, hd);
        var (qd, kd, vd) = (Run.Up(q), Run.Up(k), Run.Up(v));
        var pd = Run.Up(Rand(20, probs.Length));
        var od = Run.Up(Rand(21, outCpu.Length));
        var ld = Run.Up(lengths);
        dev.Forward(qd, kd, vd, pd, od, ld, bsz, seq);
        Close(outCpu, KernelRunner.Down(od, outCpu.Length));
        Close(probs, KernelRunner.Down(pd, probs.Length));
        // Garbage in the outputs and the dP scratch must not leak into the results (they are overwritten).
        var (dq, dk, dv) = (Run.Up(Rand(22, q.Length)), Run.Up(Rand(23, k.Length)), Run.Up(Rand(24, v.Length)));
        dev.Backward(qd, kd, vd, pd, Run.Up(dOut), dq, dk, dv, Run.Up(Rand(25, probs.Length)), ld, bsz, seq);
        Close(dqCpu, KernelRunner.Down(dq, q.Length), 1e-4f);
        Close(dkCpu, KernelRunner.Down(dk, k.Length), 1e-4f);
        Close(dvCpu, KernelRunner.Down(dv, v.Length), 1e-4f);
    }

    [Fact]
    public void SoftmaxCrossEntropyGivesNllAndTheScaledGradient()
    {
        int rows = 5, vocab = 301;
        var logits = Rand(7, rows * vocab, 3);
        int[] targets = [0, 300, 17, 17, 150];
        float scale = 0.25f;
        var dev = (float[])logits.Clone();
        var (nll, hit) = Run.CrossEntropy(dev, targets, vocab, scale, grad: true);
        for (int r = 0; r < rows; r++)
        {
            var z = logits.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
            double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
            Assert.Equal(Math.Log(sum) + max - z[targets[r]], nll[r], 4);
            Assert.Equal(Array.IndexOf(z, max) == targets[r] ? 1 : 0, hit[r]);
            for (int j = 0; j < vocab; j++)
            {
                double expected = (Math.Exp(z[j] - max) / sum - (j == targets[r] ? 1 : 0)) * scale;
                Assert.True(Math.Abs(expected - dev[r * vocab + j]) < 1e-6, $"row {r} col {j}");
            }
        }
    }
}
