using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;
using Cwa.Core.Perturbation;
using Cwa.Tests.Engine;

namespace Cwa.Tests.Perturbation;

public class PerturbationTests
{
    private static CpuBackend Backend(out ModelWeights<float> w)
    {
        w = ModelWeights<float>.Random(TinyModels.Config(), 3, 0.3);
        return new CpuBackend(w);
    }

    [Theory]
    [InlineData(PerturbationKind.Zero)]
    [InlineData(PerturbationKind.SignFlip)]
    [InlineData(PerturbationKind.GaussNoise)]
    [InlineData(PerturbationKind.BitFlip)]
    [InlineData(PerturbationKind.Scale)]
    public void RestoreIsBitExactAndOnlySelectedWeightsChange(PerturbationKind kind)
    {
        using var backend = Backend(out var w);
        var before = Enumerable.Range(0, w.Count).Select(i => (float[])w[i].Clone()).ToList();
        var sel = new List<TensorSelection> { new(1, [0, 3, 7]), new(5, [2]) };
        var snap = WeightPerturber.Apply(backend, sel, new PerturbationSettings(kind, Scale: 3, HeldType: DType.BF16, Seed: 9));
        Assert.Equal(4, snap.Count);
        for (int t = 0; t < w.Count; t++)
            for (int j = 0; j < w[t].Length; j++)
            {
                bool selected = sel.Any(s => s.TensorIndex == t && s.FlatIndices.Contains(j));
                if (!selected) Assert.Equal(before[t][j], w[t][j]);
                else Assert.NotEqual(before[t][j], w[t][j]);
            }
        double perturbedLoss = backend.ForwardLoss(TinyModels.Padded());
        WeightPerturber.Restore(backend, snap);
        for (int t = 0; t < w.Count; t++)
            Assert.Equal(before[t].Select(BitConverter.SingleToInt32Bits), w[t].Select(BitConverter.SingleToInt32Bits));
        // Flipping the top exponent bit makes a weight ~1e38: the loss may overflow, which is the point of that test.
        Assert.True(kind == PerturbationKind.BitFlip || double.IsFinite(perturbedLoss));
    }

    [Fact]
    public void BitFlipActsOnTheHeldRepresentation()
    {
        float v = 0.375f; // exactly representable in bf16 and f16
        Assert.Equal(-0.375f, HeldValueBits.FlipBit(v, 15, DType.BF16));
        Assert.Equal(-0.375f, HeldValueBits.FlipBit(v, 15, DType.F16));
        Assert.Equal(-0.375f, HeldValueBits.FlipBit(v, 31, DType.F32));
        // Top exponent bit: a small weight becomes astronomically large, the real failure mode of a flipped bf16 bit.
        Assert.True(Math.Abs(HeldValueBits.FlipBit(0.02f, 14, DType.BF16)) > 1e30f);
        // Lowest mantissa bit of bf16 0.375 (0x3EC0 -> 0x3EC1): one bf16 ulp, 2^-9, not an fp32 ulp.
        Assert.Equal(0.376953125f, HeldValueBits.FlipBit(v, 0, DType.BF16));
    }

    [Fact]
    public void ProbabilityPerturbsAboutThatFractionDeterministically()
    {
        using var backend = Backend(out _);
        var sel = new List<TensorSelection> { new(2, Enumerable.Range(0, 256).Select(i => (long)i).ToArray()) };
        var s = new PerturbationSettings(PerturbationKind.Zero, Probability: 0.25, Seed: 4);
        var a = WeightPerturber.Apply(backend, sel, s);
        WeightPerturber.Restore(backend, a);
        var b = WeightPerturber.Apply(backend, sel, s);
        WeightPerturber.Restore(backend, b);
        Assert.Equal(a.Touched[0].FlatIndices, b.Touched[0].FlatIndices);
        Assert.InRange(a.Count, 40, 90);
    }

    [Fact]
    public void BadSettingsAreInputErrors()
    {
        Assert.Throws<InputException>(() => new PerturbationSettings(PerturbationKind.Zero, Probability: 1.5).Validate());
        Assert.Throws<InputException>(() => new PerturbationSettings(PerturbationKind.BitFlip, Bit: 16, HeldType: DType.BF16).Validate());
        Assert.Throws<InputException>(() => new PerturbationSettings(PerturbationKind.GaussNoise, Scale: -1).Validate());
        Assert.Contains("zero, sign_flip, gauss_noise, bit_flip, scale", Assert.Throws<InputException>(() => PerturbationKinds.Parse("melt")).Message);
    }
}
