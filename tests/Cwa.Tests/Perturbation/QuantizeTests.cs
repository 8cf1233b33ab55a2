using Cwa.Core;
using Cwa.Core.Engine;
using Cwa.Core.Perturbation;
using Cwa.Tests.Engine;

namespace Cwa.Tests.Perturbation;

public class QuantizeTests
{
    private static CpuBackend Backend(out ModelWeights<float> w)
    {
        w = ModelWeights<float>.Random(TinyModels.Config(), 5, 0.3);
        return new CpuBackend(w);
    }

    /// <summary>Independent reference: the group's absmax from the original row, levels in double, as an RTN quantiser writes it.</summary>
    private static double Reference(float[] original, int cols, long flat, int group, int bits)
    {
        long row = flat / cols;
        int col = (int)(flat % cols);
        int start = col - col % group, end = Math.Min(cols, start + group);
        double max = 0;
        for (int c = start; c < end; c++) max = Math.Max(max, Math.Abs(original[row * cols + c]));
        int q = (1 << (bits - 1)) - 1;
        double scale = (float)(max / q);
        if (scale == 0) return 0;
        return Math.Clamp(Math.Round(original[flat] / scale, MidpointRounding.ToEven), -q, q) * scale;
    }

    [Theory]
    [InlineData(8, 128)]
    [InlineData(4, 16)]
    [InlineData(3, 5)]   // 16 columns in groups of 5: the last group of each row holds one column
    [InlineData(2, 4)]
    public void QuantisedValuesMatchADirectComputation(int bits, int group)
    {
        using var backend = Backend(out var w);
        int t = Enumerable.Range(0, w.Count).First(i => backend.Specs[i].Is2D && backend.Specs[i].Block == 0 && backend.Specs[i].Cols == 16);
        var original = (float[])w[t].Clone();
        var all = Enumerable.Range(0, original.Length).Select(i => (long)i).ToArray();
        var snap = WeightPerturber.Apply(backend, [new TensorSelection(t, all)], new PerturbationSettings(PerturbationKind.Quantize, QuantBits: bits, QuantGroup: group));
        int cols = backend.Specs[t].Cols;
        for (long i = 0; i < original.Length; i++)
            Assert.Equal(Reference(original, cols, i, group, bits), w[t][i], 1e-6);
        // Each group holds at most 2 qmax + 1 distinct values, and its absmax survives.
        int q = (1 << (bits - 1)) - 1;
        for (int row = 0; row < original.Length / cols; row++)
            for (int start = 0; start < cols; start += group)
            {
                var values = Enumerable.Range(start, Math.Min(group, cols - start)).Select(c => w[t][row * cols + c]).ToList();
                Assert.True(values.Distinct().Count() <= 2 * q + 1);
                float absmax = Enumerable.Range(start, values.Count).Max(c => Math.Abs(original[row * cols + c]));
                Assert.Equal(absmax, values.Max(Math.Abs), 1e-6);
            }
        WeightPerturber.Restore(backend, snap);
        Assert.Equal(original.Select(BitConverter.SingleToInt32Bits), w[t].Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void QuantisingPartOfAGroupGivesTheValuesQuantisingAllOfItWould()
    {
        using var backend = Backend(out var w);
        int t = Enumerable.Range(0, w.Count).First(i => backend.Specs[i].Is2D && backend.Specs[i].Block == 1);
        var settings = new PerturbationSettings(PerturbationKind.Quantize, QuantBits: 3, QuantGroup: 8);
        var full = WeightPerturber.Apply(backend, [new TensorSelection(t, Enumerable.Range(0, w[t].Length).Select(i => (long)i).ToArray())], settings);
        var quantisedAll = (float[])w[t].Clone();
        WeightPerturber.Restore(backend, full);
        long[] some = [1, 2, 9, 33, 34, 35, 70];
        var original = (float[])w[t].Clone();
        var part = WeightPerturber.Apply(backend, [new TensorSelection(t, some)], settings);
        for (long i = 0; i < w[t].Length; i++)
            Assert.Equal(some.Contains(i) ? quantisedAll[i] : original[i], w[t][i]);
        WeightPerturber.Restore(backend, part);
        Assert.Equal(original, w[t]);
    }

    [Fact]
    public void AZeroGroupStaysZero()
    {
        Assert.Equal(0f, RoundToNearest.Quantize(0f, RoundToNearest.Scale([0f, 0f], 4), 4));
        Assert.Equal(7, RoundToNearest.MaxLevel(4));
        Assert.Equal(1, RoundToNearest.MaxLevel(2));
        // 2-bit: levels -1, 0, 1 of absmax; 0.5 of absmax rounds half to even (0).
        float s = RoundToNearest.Scale([1f, -0.5f], 2);
        Assert.Equal(0f, RoundToNearest.Quantize(-0.5f, s, 2));
        Assert.Equal(1f, RoundToNearest.Quantize(0.51f, s, 2));
    }

    [Fact]
    public void AOneDimensionalTensorIsGroupedAlongTheVector()
    {
        using var backend = Backend(out var w);
        int t = Enumerable.Range(0, w.Count).First(i => !backend.Specs[i].Is2D);
        var original = (float[])w[t].Clone();
        var all = Enumerable.Range(0, original.Length).Select(i => (long)i).ToArray();
        var snap = WeightPerturber.Apply(backend, [new TensorSelection(t, all)], new PerturbationSettings(PerturbationKind.Quantize, QuantBits: 2, QuantGroup: 8));
        // 2-bit levels of groups of 8 along the vector: each value is 0 or +-absmax of its group, so most change.
        Assert.True(w[t].Zip(original).Count(p => p.First != p.Second) > original.Length / 2);
        for (int i = 0; i < original.Length; i++)
            Assert.Equal(Reference(original, original.Length, i, 8, 2), w[t][i], 1e-6);
        WeightPerturber.Restore(backend, snap);
        Assert.Equal(original, w[t]);
    }

    [Fact]
    public void ComplementDropsTheKeptIndicesOnly()
    {
        Assert.Equal([0L, 2, 3, 5], DenseAndSparse.Complement(6, [1, 4, 4]));
        Assert.Equal([], DenseAndSparse.Complement(2, [0, 1]));
        var (all, rest) = DenseAndSparse.Sets([(3, 4L), (5, 3L)], [new TensorSelection(5, [0, 2])]);
        Assert.Equal([0L, 1, 2, 3], all[0].FlatIndices);
        Assert.Equal([0L, 1, 2, 3], rest[0].FlatIndices);
        Assert.Equal([1L], rest[1].FlatIndices);
    }

    [Theory]
    [InlineData(5, 128, "--quant-bits must be one of 8, 4, 3, 2 (got 5)")]
    [InlineData(4, 0, "--quant-group must be at least 1 (got 0)")]
    public void BadGridsAreInputErrors(int bits, int group, string message)
    {
        var e = Assert.Throws<InputException>(() => new PerturbationSettings(PerturbationKind.Quantize, QuantBits: bits, QuantGroup: group).Validate());
        Assert.Equal(message, e.Message);
    }
}
