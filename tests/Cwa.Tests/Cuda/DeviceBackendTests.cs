using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Cuda;
using Cwa.Cuda.Engine;
using Cwa.Cuda.Gemm;
using Cwa.Tests.Engine;

namespace Cwa.Tests.Cuda;

/// <summary>
/// The whole device backend (forward, backward, loss head, gradient accumulation) on ILGPU's CPU accelerator
/// against the CPU backend, the reference: same loss, same gradient for every parameter tensor.
/// </summary>
public class DeviceBackendTests
{
    private static CudaBackend OnCpuAccelerator(ModelWeights<float> w, StorageFormat format = StorageFormat.F32, bool recompute = false, long logitsChunk = CudaBackend.DefaultLogitsChunk)
    {
        var device = DeviceContext.CreateCpu();
        return new CudaBackend(device, new FallbackGemm(device.Accelerator), w, format, new EngineOptions(2, recompute), logitsChunk);
    }

    private static float[] Read(IBackend b, int t, bool gradient)
    {
        var x = new float[b.Specs[t].NumElements];
        if (gradient) b.ReadGradient(t, x);
        else b.ReadWeight(t, x);
        return x;
    }

    /// <summary>Largest |difference| relative to the tensor's largest |value|.</summary>
    private static void SameGradients(IBackend expected, IBackend actual, double tolerance)
    {
        for (int t = 0; t < expected.Specs.Count; t++)
        {
            var e = Read(expected, t, true);
            var a = Read(actual, t, true);
            double scale = e.Max(v => Math.Abs((double)v)), worst = 0;
            for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(e[i] - a[i]));
            Assert.True(scale > 0, $"{expected.Specs[t].Name}: reference gradient is all zero");
            Assert.True(worst <= tolerance * scale, $"{expected.Specs[t].Name}: max |diff| {worst:E3} vs max |g| {scale:E3}");
        }
    }

    public static TheoryData<bool, bool, bool, bool, bool> Cases => new()
    {
        // tied, gqa, bias, llama3 rope, recompute
        { false, true, false, false, false },
        { true, true, false, false, false },
        { false, false, false, false, false },
        { false, true, true, true, false },
        { true, false, true, false, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LossAndEveryGradientMatchTheCpuBackend(bool tied, bool gqa, bool bias, bool llama3, bool recompute)
    {
        var config = TinyModels.Config(tied, gqa, bias, llama3);
        var w = ModelWeights<float>.Random(config, 5, std: 0.3);
        using var cpu = new CpuBackend(w.Clone(), new EngineOptions(2));
        using var dev = OnCpuAccelerator(w, recompute: recompute);
        foreach (var batch in new[] { TinyModels.Padded(), TinyModels.Single(), TinyModels.Make([2, 7, 1, 4], 3) })
        {
            double lc = cpu.ForwardBackward(batch, 0.5);
            double ld = dev.ForwardBackward(batch, 0.5);
            Assert.Equal(lc, ld, 1e-5 * Math.Abs(lc));
        }
        SameGradients(cpu, dev, 1e-5);
        dev.ClearGradients();
        Assert.All(Read(dev, 0, true), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void TwoRunsGiveBitIdenticalGradients()
    {
        var config = TinyModels.Config(bias: true);
        var w = ModelWeights<float>.Random(config, 13, std: 0.3);
        using var a = OnCpuAccelerator(w);
        using var b = OnCpuAccelerator(w);
        foreach (var dev in new[] { a, b })
        {
            dev.ForwardBackward(TinyModels.Padded(), 1);
            dev.ForwardBackward(TinyModels.Make([5, 7, 2], 9), 1);
        }
        for (int t = 0; t < w.Count; t++)
            Assert.Equal(Read(a, t, true).Select(BitConverter.SingleToInt32Bits), Read(b, t, true).Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void EvaluationAndForwardLossMatchWithLogitsInSmallChunks()
    {
        var config = TinyModels.Config();
        var w = ModelWeights<float>.Random(config, 8, std: 0.3);
        using var cpu = new CpuBackend(w.Clone());
        // Two rows per logits chunk: the chunk loop, row gather and dx scatter run many times per batch.
        using var dev = OnCpuAccelerator(w, logitsChunk: 2 * config.VocabSize);
        var batch = TinyModels.Make([6, 3, 5, 1], 4);
        var ec = cpu.Evaluate(batch);
        var ed = dev.Evaluate(batch);
        Assert.Equal(ec.Tokens, ed.Tokens);
        Assert.Equal(ec.Correct, ed.Correct);
        Assert.Equal(ec.SumNll, ed.SumNll, 1e-5 * ec.SumNll);
        Assert.Equal(cpu.ForwardLoss(batch), dev.ForwardLoss(batch), 1e-5);
        cpu.ForwardBackward(batch, 1);
        dev.ForwardBackward(batch, 1);
        SameGradients(cpu, dev, 1e-5);
    }

    [Fact]
    public void Bf16WeightsStayBf16AndTrackTheFp32Reference()
    {
        var config = TinyModels.Config(gqa: true);
        var w = ModelWeights<float>.Random(config, 9, std: 0.3);
        for (int t = 0; t < w.Count; t++) DTypeConversion.RoundTo(w[t], DType.BF16);
        using var cpu = new CpuBackend(w.Clone());
        using var dev = OnCpuAccelerator(w, StorageFormat.Bf16);
        // The held values come back exactly: they were bf16 to begin with.
        for (int t = 0; t < w.Count; t++) Assert.Equal(w[t], Read(dev, t, false));
        var batch = TinyModels.Padded();
        double lc = cpu.ForwardBackward(batch, 1), ld = dev.ForwardBackward(batch, 1);
        // Activations are rounded to bf16 before each product (as GemmEx takes them), so only close, not equal.
        Assert.Equal(lc, ld, 2e-2 * lc);
        for (int t = 0; t < w.Count; t++)
        {
            var e = Read(cpu, t, true);
            var a = Read(dev, t, true);
            double dot = 0, ne = 0, na = 0;
            for (int i = 0; i < e.Length; i++) { dot += e[i] * a[i]; ne += e[i] * e[i]; na += a[i] * a[i]; }
            Assert.True(dot / Math.Sqrt(ne * na) > 0.99, $"{w.Specs[t].Name}: cosine {dot / Math.Sqrt(ne * na):F4}");
        }
    }

    [Fact]
    public void WritesAreRoundedToTheHeldFormatAndRestoreExactly()
    {
        var config = TinyModels.Config();
        var w = ModelWeights<float>.Random(config, 10, std: 0.3);
        for (int t = 0; t < w.Count; t++) DTypeConversion.RoundTo(w[t], DType.BF16);
        using var dev = OnCpuAccelerator(w, StorageFormat.Bf16);
        int q = w.IndexOf("model.layers.0.self_attn.q_proj.weight");
        long[] idx = [0, 5, 255];
        dev.WriteWeights(q, idx, [1.00390625f + 1e-4f, -3f, 0f]);
        var now = Read(dev, q, false);
        Assert.Equal(BitConverter.UInt32BitsToSingle((uint)DTypeConversion.FloatToBf16(1.00390625f + 1e-4f) << 16), now[0]);
        Assert.Equal(-3f, now[5]);
        Assert.Equal(0f, now[255]);
        Assert.Equal(w[q][6], now[6]);
        var some = new float[3];
        dev.ReadWeightsAt(q, idx, some);
        Assert.Equal(idx.Select(i => now[i]), some);
        dev.WriteWeights(q, idx, idx.Select(i => w[q][i]).ToArray());
        Assert.Equal(w[q], Read(dev, q, false));
        int norm = w.IndexOf("model.norm.weight");
        dev.WriteWeights(norm, [1], [0.123456789f]);
        Assert.Equal(0.123456789f, Read(dev, norm, false)[1]);
    }

    [Fact]
    public void TheObserverSeesTheSameActivationsAsOnTheCpu()
    {
        var config = TinyModels.Config();
        var w = ModelWeights<float>.Random(config, 11, std: 0.3);
        using var cpu = new CpuBackend(w.Clone());
        using var dev = OnCpuAccelerator(w);
        var a = new Cwa.Core.Sensitivity.ActivationStats();
        var b = new Cwa.Core.Sensitivity.ActivationStats();
        cpu.Observer = a;
        dev.Observer = b;
        var batch = TinyModels.Padded();
        cpu.ForwardLoss(batch);
        dev.ForwardLoss(batch);
        foreach (var spec in w.Specs.Where(s => s.Is2D && s.Role != ParameterRole.Embedding))
        {
            var na = a.InputNorms(spec.Name)!;
            var nb = b.InputNorms(spec.Name)!;
            for (int i = 0; i < na.Length; i++) Assert.Equal(na[i], nb[i], 1e-4 * (1 + Math.Abs(na[i])));
        }
    }

    [Fact]
    public void TheMemoryPlanCountsWhatTheRunAllocatesAndRefusesWhenTooSmall()
    {
        var c = TestModelPresets.Config("llama-3.1-8b-shape", 128256);
        var shape = new WorkspaceShape(4, 512, true, false, CudaBackend.DefaultLogitsChunk);
        var plan = DeviceMemoryPlan.For("H100", c, StorageFormat.Bf16, shape, 80L << 30);
        long parameters = LlamaLayout.ParameterCount(c);
        Assert.Equal(parameters * 4, plan.Gradients);
        Assert.InRange(plan.Weights, parameters * 2, parameters * 2 + (1L << 24));
        var recompute = DeviceMemoryPlan.For("H100", c, StorageFormat.Bf16, shape with { Recompute = true }, 80L << 30);
        Assert.True(recompute.Activations < plan.Activations / 8, $"{recompute.Activations} vs {plan.Activations}");
        var tooSmall = plan with { Available = plan.Total / 2 };
        var e = Assert.Throws<InputException>(tooSmall.EnsureFits);
        Assert.Contains("--recompute", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
