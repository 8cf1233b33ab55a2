using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Tokenization;

namespace Cwa.Tests.Engine;

/// <summary>Which block matrices the CPU products read as mapped bf16, and that every other reader sees the same values.</summary>
public class StreamedWeightsTests
{
    private static CheckpointFolder Model(TempDir dir, DType stored)
    {
        var tok = ByteLevelBpeTrainer.Train(BuiltInCorpus.All.Take(40), 300);
        TestModelGenerator.Write(dir.File("m"), TestModelPresets.Config("tiny", tok.VocabSize), stored, 3, tok.TokenizerJson, tok.TokenizerConfigJson);
        return CheckpointFolder.Open(dir.File("m"));
    }

    [Fact]
    public void Bf16MatricesAreReadMappedAndScoringWidensTheValuesAWidenedBlockHolds()
    {
        using var dir = new TempDir();
        using var ckpt = Model(dir, DType.BF16);
        using var w = new StreamedWeights(ckpt, DType.BF16);
        Assert.True(StreamedWeights.ReadsMapped(ckpt, DType.BF16));
        var members = w.BlockMembers(1).Where(t => w.Specs[t].Is2D).ToList();
        w.LoadBlock(1);
        var widened = members.ToDictionary(t => t, t => (float[])w.Slots[t].Clone());
        w.LoadBlock(1, mapped: true);
        foreach (int t in members)
        {
            Assert.Empty(w.Slots[t]);
            Assert.Equal(w.Specs[t].NumElements, w.Mapped[t]!.Value.Length);
            Assert.Equal(widened[t], w.Widened(t));
        }
        w.LoadBlock(0, mapped: true);
        Assert.All(members, t => Assert.Null(w.Mapped[t])); // the previous block is unbound
        w.ReleaseBlocks();
        Assert.All(w.Mapped, m => Assert.Null(m));
    }

    [Fact]
    public void APerturbedMatrixOfTheMappedBlockIsWidenedWithItsNewValueAndStaysSoUntilRestored()
    {
        using var dir = new TempDir();
        using var ckpt = Model(dir, DType.BF16);
        using var w = new StreamedWeights(ckpt, DType.BF16);
        int t = w.BlockMembers(0).First(i => w.Specs[i].Is2D);
        w.LoadBlock(0, mapped: true);
        Assert.NotNull(w.Mapped[t]);
        var original = new float[1];
        w.ReadWeightsAt(t, [5], original);
        w.WriteWeights(t, [5], [original[0] + 1f]);
        Assert.Null(w.Mapped[t]);
        Assert.Equal(original[0] + 1f, w.Slots[t][5]);
        w.LoadBlock(1, mapped: true);
        w.LoadBlock(0, mapped: true);
        Assert.Null(w.Mapped[t]); // reloaded: still perturbed, so widened with the overlay
        Assert.Equal(original[0] + 1f, w.Slots[t][5]);
        w.WriteWeights(t, [5], original);
        w.LoadBlock(1, mapped: true);
        w.LoadBlock(0, mapped: true);
        Assert.NotNull(w.Mapped[t]);
    }

    [Theory]
    [InlineData(DType.F32, DType.F32)]
    [InlineData(DType.BF16, DType.F16)]
    public void MatricesWhoseWideningChangesOrCopiesThemAreWidened(DType stored, DType held)
    {
        using var dir = new TempDir();
        using var ckpt = Model(dir, stored);
        using var w = new StreamedWeights(ckpt, held);
        Assert.False(StreamedWeights.ReadsMapped(ckpt, held));
        w.LoadBlock(0, mapped: true);
        Assert.All(w.BlockMembers(0).Where(t => w.Specs[t].Is2D), t =>
        {
            Assert.Null(w.Mapped[t]);
            Assert.Equal(w.Specs[t].NumElements, w.Slots[t].Length);
        });
    }
}
