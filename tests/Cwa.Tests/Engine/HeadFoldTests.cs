using Cwa.Core;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>
/// lm_head's per-batch sums (<see cref="PerBatchHeadGradient"/>) take each vocabulary chunk's gradient straight from
/// its product where they can (folded) and from a chunk buffer where the product writes C (a batch deeper than one
/// SGEMM step, or a chunk too small for the packed path): either way they must hold exactly what adding each batch's
/// whole gradient gives (<see cref="GradientSums.AddBatch"/>, the batch-major pass's arithmetic).
/// </summary>
public class HeadFoldTests
{
    private const int Dim = 64, Vocab = 35, VocabChunk = 16; // chunks of 16, 16 and 3 rows: the last one too small to fold

    [Theory]
    [InlineData(37, false)]
    [InlineData(37, true)]
    [InlineData(1100, false)]
    public void PerBatchHeadSumsAreTheWholeBatchesAddedBitForBit(int rows, bool reused)
    {
        var rng = new SplitMix64(41);
        var w = Random(ref rng, Vocab * Dim, 0.3);
        var batches = Enumerable.Range(0, 3).Select(b => (X: Random(ref rng, rows * Dim, 1.0),
            Targets: Enumerable.Range(0, rows).Select(_ => (int)rng.NextLong(Vocab)).ToArray())).ToList();
        int[] all = Enumerable.Range(0, rows).ToArray();
        var head = new LossHead<float>(2, VocabChunk);
        long length = (long)Vocab * Dim;

        var expected = new GradientSums(length, Accumulation.PerBatch);
        for (int b = 0; b < batches.Count; b++)
        {
            var g = new float[length];
            head.Run(all, batches[b].Targets, batches[b].X, Dim, new ResidentRows<float>(w, Dim), Vocab, new ResidentRows<float>(g, Dim), new float[rows * Dim], 1.0);
            expected.AddBatch(0, g, 0, g.Length, 0.5, b, "lm_head.weight");
        }

        var sums = new GradientSums(length, Accumulation.PerBatch);
        var pieces = new PerBatchHeadGradient(sums, Dim, 0.5, "lm_head.weight");
        void Backward(int b)
        {
            pieces.Batch = b;
            head.Run(all, batches[b].Targets, batches[b].X, Dim, new ResidentRows<float>(w, Dim), Vocab, pieces, new float[rows * Dim], 1.0);
            pieces.EndBatch();
        }
        if (reused)
        {
            // Sums holding an earlier pass: after Clear the first batch's pieces must write, not add.
            Backward(2);
            sums.Clear();
        }
        for (int b = 0; b < batches.Count; b++) Backward(b);

        Assert.True(BitEqual(expected.Total, sums.Total), "totals differ");
        Assert.True(BitEqual(expected.Squares!, sums.Squares!), "squares differ");
    }

    [Fact]
    public void ANonFiniteFoldedPieceIsReportedByTensorBatchAndFlatIndex()
    {
        var rng = new SplitMix64(43);
        var w = Random(ref rng, Vocab * Dim, 0.3);
        int rows = 37;
        var x = Random(ref rng, rows * Dim, 1.0);
        x[5 * Dim + 7] = float.PositiveInfinity;
        var pieces = new PerBatchHeadGradient(new GradientSums((long)Vocab * Dim, Accumulation.PerBatch), Dim, 1.0, "lm_head.weight") { Batch = 6 };
        var e = Assert.Throws<CwaException>(() => new LossHead<float>(2, VocabChunk).Run(Enumerable.Range(0, rows).ToArray(), new int[rows], x, Dim,
            new ResidentRows<float>(w, Dim), Vocab, pieces, new float[rows * Dim], 1.0));
        Assert.StartsWith("calibration batch 6: gradient of lm_head.weight not finite at flat index 0;", e.Message);
    }

    private static bool BitEqual(float[] a, float[] b) =>
        a.Length == b.Length && a.Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.Select(BitConverter.SingleToInt32Bits));

    private static float[] Random(ref SplitMix64 rng, int n, double scale)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(scale * rng.NextGaussian());
        return x;
    }
}
