using Cwa.Core.Data;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

public class EnginePropertyTests
{
    [Theory]
    [InlineData(false, true, false, false)]
    [InlineData(true, false, true, true)]
    public void LossMatchesIndependentReference(bool tied, bool gqa, bool bias, bool llama3)
    {
        var config = TinyModels.Config(tied, gqa, bias, llama3);
        var wd = ModelWeights<double>.Random(config, 21, 0.3);
        var batch = TinyModels.Padded();
        double reference = ReferenceLlama.Loss(wd, batch);
        double engine = new LlamaModel<double>(wd).ForwardLoss(batch);
        Assert.True(Math.Abs(engine - reference) <= 1e-12 * Math.Abs(reference), $"double engine {engine} vs reference {reference}");

        var wf = ModelWeights<float>.Random(config, 21, 0.3);
        double fl = new LlamaModel<float>(wf).ForwardLoss(batch);
        Assert.True(Math.Abs(fl - reference) <= 1e-4 * Math.Abs(reference), $"float engine {fl} vs reference {reference}");
    }

    [Fact]
    public void RecomputeGivesBitIdenticalGradients()
    {
        var config = TinyModels.Config(bias: true);
        var w = ModelWeights<float>.Random(config, 4, 0.3);
        var g1 = w.ZerosLike();
        var g2 = w.ZerosLike();
        double l1 = new LlamaModel<float>(w, new EngineOptions(2, Recompute: false)).ForwardBackward(TinyModels.Padded(), g1);
        double l2 = new LlamaModel<float>(w, new EngineOptions(2, Recompute: true)).ForwardBackward(TinyModels.Padded(), g2);
        Assert.Equal(l1, l2);
        for (int i = 0; i < g1.Count; i++) Assert.Equal(g1[i], g2[i]);
    }

    [Fact]
    public void GradientsAreBitIdenticalAcrossRuns()
    {
        var config = TinyModels.Config() with { HiddenSize = 64, IntermediateSize = 160, HeadDim = 16, VocabSize = 97 };
        var w = ModelWeights<float>.Random(config, 8);
        var batch = TinyModels.Make([40, 33, 17, 40], 5, vocab: 97);
        var g1 = w.ZerosLike();
        var g2 = w.ZerosLike();
        new LlamaModel<float>(w, new EngineOptions(2)).ForwardBackward(batch, g1);
        new LlamaModel<float>(w, new EngineOptions(2)).ForwardBackward(batch, g2);
        for (int i = 0; i < g1.Count; i++) Assert.Equal(g1[i], g2[i]);
    }

    [Fact]
    public void ReusedWorkBuffersDoNotLeakBetweenBatches()
    {
        var w = ModelWeights<float>.Random(TinyModels.Config(bias: true), 12, 0.3);
        var first = TinyModels.Make([6, 6, 6], 31);           // fills every row of the buffers
        var second = TinyModels.Make([6, 2, 4], 32);          // same shape, shorter rows: stale rows must not matter
        var used = new LlamaModel<float>(w, new EngineOptions(2));
        used.ForwardBackward(first, w.ZerosLike());
        var g1 = w.ZerosLike();
        double l1 = used.ForwardBackward(second, g1);
        var g2 = w.ZerosLike();
        double l2 = new LlamaModel<float>(w, new EngineOptions(2)).ForwardBackward(second, g2);
        Assert.Equal(l2, l1);
        for (int i = 0; i < g1.Count; i++) Assert.Equal(g2[i], g1[i]);
        Assert.Equal(new LlamaModel<float>(w).Evaluate(second), used.Evaluate(second));
    }

    [Fact]
    public void PaddingDoesNotChangeASequencesNll()
    {
        var config = TinyModels.Config();
        var w = ModelWeights<double>.Random(config, 6, 0.3);
        var model = new LlamaModel<double>(w);
        var padded = TinyModels.Padded();
        double sum = 0;
        for (int b = 0; b < padded.BatchSize; b++)
        {
            int len = padded.Lengths[b];
            var alone = new Batch(1, len, padded.Tokens.Skip(b * padded.SeqLen).Take(len).ToArray(), [len]);
            sum += model.Evaluate(alone).SumNll;
        }
        var together = model.Evaluate(padded);
        Assert.Equal(sum, together.SumNll, 10);
        Assert.Equal(padded.TargetCount, together.Tokens);
        Assert.Equal(model.ForwardLoss(padded), together.SumNll / together.Tokens, 12);
    }

    [Fact]
    public void CpuBackendWritesAndReadsIndividualWeights()
    {
        var w = ModelWeights<float>.Random(TinyModels.Config(), 1);
        using var backend = new CpuBackend(w);
        backend.WriteWeights(1, [0L, 5L], [2.5f, -1f]);
        var read = new float[w[1].Length];
        backend.ReadWeight(1, read);
        Assert.Equal(2.5f, read[0]);
        Assert.Equal(-1f, read[5]);
        double before = backend.ForwardBackward(TinyModels.Padded(), 1.0);
        var g = new float[w[1].Length];
        backend.ReadGradient(1, g);
        Assert.Contains(g, v => v != 0);
        backend.ClearGradients();
        backend.ReadGradient(1, g);
        Assert.All(g, v => Assert.Equal(0f, v));
        Assert.True(before > 0);
    }
}
