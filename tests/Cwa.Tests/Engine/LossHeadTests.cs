using Cwa.Core;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>The chunked loss head gives the same loss, accuracy and gradients whatever its tile sizes.</summary>
public class LossHeadTests
{
    private static (LossHeadResult, double[] DHead, double[] Dx) Run(int vocabChunk, long tile, double[] x, double[] w, int[] rows, int[] targets, int vocab, int dim,
        long keptLogits = LossHead<double>.KeptLogitsLimit)
    {
        var head = new LossHead<double>(2, vocabChunk, tile, keptLogits);
        var dHead = new double[w.Length];
        var dx = new double[x.Length];
        var r = head.Run(rows, targets, x, dim, new ResidentRows<double>(w, dim), vocab, new ResidentRows<double>(dHead, dim), dx, 0.7);
        return (new LossHeadResult(r.SumNll, r.Targets, r.Correct), dHead, dx);
    }

    private readonly record struct LossHeadResult(double SumNll, long Targets, long Correct);

    [Theory]
    [InlineData(7, 1L << 24)]
    [InlineData(5, 12)]
    [InlineData(1, 3)]
    [InlineData(64, 7)]
    public void ChunkSeamsChangeNothing(int vocabChunk, long tile)
    {
        const int vocab = 37, dim = 6, n = 11;
        var rng = new SplitMix64(9);
        var x = Enumerable.Range(0, n * dim).Select(_ => rng.NextGaussian()).ToArray();
        var w = Enumerable.Range(0, vocab * dim).Select(_ => 2 * rng.NextGaussian()).ToArray();
        // Every other row predicts a token; one target sits on each chunk edge.
        int[] rows = [0, 2, 3, 5, 8, 10];
        int[] targets = [0, 4, 5, 36, 35, 10];
        var (r0, h0, d0) = Run(vocab, 1L << 24, x, w, rows, targets, vocab, dim);
        var (r1, h1, d1) = Run(vocabChunk, tile, x, w, rows, targets, vocab, dim);
        Assert.Equal(r0.Targets, r1.Targets);
        Assert.Equal(r0.Correct, r1.Correct);
        Assert.Equal(r0.SumNll, r1.SumNll, 12);
        for (int i = 0; i < h0.Length; i++) Assert.Equal(h0[i], h1[i], 12);
        for (int i = 0; i < d0.Length; i++) Assert.Equal(d0[i], d1[i], 12);
        // Pass 2 with recomputed logits instead of the kept ones: the same products, so the same bits.
        var (r2, h2, d2) = Run(vocabChunk, tile, x, w, rows, targets, vocab, dim, keptLogits: 0);
        Assert.Equal(r1, r2);
        Assert.Equal(h1, h2);
        Assert.Equal(d1, d2);
    }

    [Fact]
    public void ArgMaxIsTheFirstOneAcrossChunks()
    {
        const int vocab = 8, dim = 1;
        double[] x = [1];
        double[] w = [0, 3, 1, 3, 2, 3, 0, 0]; // logits equal at 1, 3 and 5, in three different chunks of 2
        foreach (int target in new[] { 1, 3 })
        {
            var head = new LossHead<double>(1, 2);
            var r = head.Run([0], [target], x, dim, new ResidentRows<double>(w, dim), vocab, null, null, 1);
            Assert.Equal(target == 1 ? 1 : 0, r.Correct);
        }
    }
}
