using Cwa.Core;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>
/// A folded product (<see cref="GemmFold"/>) must add exactly the values the plain product computes, once each, at C's
/// indices, on every path of <see cref="Sgemm"/>: the reference loop, one depth step (C never written), several depth
/// steps (C as scratch), rows split between threads and columns split between threads.
/// </summary>
public class GemmFoldTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 7, 13, 5 },        // small: the reference loop
        { 5, 9, 0 },         // no depth: every value is 0
        { 100, 300, 700 },   // one depth step, rows split between threads
        { 20, 2093, 530 },   // one depth step, columns split between threads
        { 60, 200, 1100 },   // two depth steps: C is the scratch of the first
        { 30, 2300, 1500 },  // two depth steps, columns split
    };

    public static TheoryData<string, int, int, int> KernelShapes => KernelCases.Each(Shapes);

    [Theory]
    [MemberData(nameof(KernelShapes))]
    public void FoldAddsThePlainProductToTheSumsOnEveryPath(string kernel, int m, int n, int k)
    {
        using var selected = KernelCases.Use(kernel);
        var rng = new SplitMix64(17);
        int ldc = n + 3, cOff = 5, len = cOff + m * ldc + 4;
        int saved = Gemm.MaxThreads;
        try
        {
            foreach (bool ta in new[] { true, false })
                foreach (bool first in new[] { false, true })
                    foreach (int threads in new[] { 1, 2 })
                    {
                        Gemm.MaxThreads = threads;
                        int lda = ta ? m : k, ldb = n;
                        var a = Random(ref rng, Math.Max(1, m * k));
                        var b = Random(ref rng, Math.Max(1, n * k));
                        var plain = new float[len];
                        Sgemm.Compute(ta, false, m, n, k, 1f, a, 0, lda, b, 0, ldb, 0f, plain, cOff, ldc);

                        var total = Random(ref rng, len);
                        var squares = Random(ref rng, len);
                        if (first) { Array.Fill(total, float.NaN); Array.Fill(squares, float.NaN); }
                        var (total0, squares0) = ((float[])total.Clone(), (float[])squares.Clone());
                        var fold = new GemmFold(total, squares);
                        fold.Start(0.25, first);
                        var c = new float[len];
                        Array.Fill(c, -7f);
                        Sgemm.Compute(ta, false, m, n, k, 1f, a, 0, lda, b, 0, ldb, 0f, c, cOff, ldc, fold);

                        string at = $"ta={ta} first={first} threads={threads}";
                        Assert.True(fold.Applied, at);
                        Assert.Equal(-1, fold.FirstBad);
                        for (int i = 0; i < len; i++)
                        {
                            int row = (i - cOff) / ldc, col = (i - cOff) % ldc;
                            bool inC = i >= cOff && row < m && col < n;
                            float g = plain[i];
                            float sq = inC ? (first ? g * g : squares0[i] + g * g) : squares0[i];
                            float tot = inC ? (first ? g * 0.25f + 0f : total0[i] + g * 0.25f) : total0[i];
                            Assert.True(BitConverter.SingleToInt32Bits(sq) == BitConverter.SingleToInt32Bits(squares[i]), $"{at}: squares[{i}] {squares[i]}, expected {sq}");
                            Assert.True(BitConverter.SingleToInt32Bits(tot) == BitConverter.SingleToInt32Bits(total[i]), $"{at}: total[{i}] {total[i]}, expected {tot}");
                        }
                        // A product of one step (past the reference loop's sizes) keeps its values out of C altogether.
                        if (k is > 0 and <= Sgemm.KCSingle && (long)m * n * k >= 32 * 32 * 32 && Sgemm.Vectorised) Assert.All(c, v => Assert.Equal(-7f, v));
                    }
        }
        finally { Gemm.MaxThreads = saved; }
    }

    [Theory]
    [InlineData(100, 300, 700)]
    [InlineData(20, 2093, 530)]
    [InlineData(60, 200, 1100)]
    [InlineData(7, 13, 5)]
    public void ANonFiniteValueIsReportedAtItsFirstIndex(int m, int n, int k)
    {
        var rng = new SplitMix64(23);
        var a = Random(ref rng, m * k);
        var b = Random(ref rng, n * k);
        // op(A) = A^T is [m, k]: row i of the product is column i of A. An infinity there spoils row i of C.
        a[(k - 1) * m + (m - 2)] = float.PositiveInfinity;
        b[n - 1] = float.NaN; // and a NaN spoils C's last column
        var plain = new float[m * n];
        Sgemm.Compute(true, false, m, n, k, 1f, a, 0, m, b, 0, n, 0f, plain, 0, n);
        long expected = NonFinite.FirstIndex(plain);
        Assert.Equal(n - 1, expected);

        var fold = new GemmFold(new float[m * n], new float[m * n]);
        fold.Start(1, first: false);
        Sgemm.Compute(true, false, m, n, k, 1f, a, 0, m, b, 0, n, 0f, new float[m * n], 0, n, fold);
        Assert.Equal(expected, fold.FirstBad);
    }

    [Theory]
    [MemberData(nameof(KernelShapes))]
    public void AOneStepFoldNeedsNoCAndOneThatWritesCRefusesToGoWithout(string kernel, int m, int n, int k)
    {
        using var selected = KernelCases.Use(kernel);
        // Without a vector kernel every product takes the reference loop, which writes C.
        bool oneStep = k is > 0 and <= Sgemm.KCSingle && (long)m * n * k >= 32 * 32 * 32 && Sgemm.Vectorised;
        Assert.Equal(!oneStep, Sgemm.FoldWritesC(m, n, k));
        var rng = new SplitMix64(31);
        var a = Random(ref rng, Math.Max(1, m * k));
        var b = Random(ref rng, Math.Max(1, n * k));
        (float[] Total, float[] Squares) Folded(float[] c)
        {
            var (total, squares) = (new float[m * n], new float[m * n]);
            var fold = new GemmFold(total, squares);
            fold.Start(0.5, first: true);
            Sgemm.Compute(true, false, m, n, k, 1f, a, 0, m, b, 0, n, 0f, c, 0, n, fold);
            return (total, squares);
        }
        var withC = Folded(new float[m * n]);
        if (!oneStep)
        {
            var e = Assert.Throws<ArgumentException>(() => Folded([]));
            Assert.Contains($"depth {k} writes C", e.Message);
            return;
        }
        var withoutC = Folded([]);
        Assert.True(withC.Total.AsSpan().SequenceEqual(withoutC.Total), "totals differ without C");
        Assert.True(withC.Squares.AsSpan().SequenceEqual(withoutC.Squares), "squares differ without C");
    }

    [Fact]
    public void AFoldedProductRefusesANonZeroBeta()
    {
        var fold = new GemmFold(new float[4], new float[4]);
        fold.Start(1, first: true);
        Assert.Throws<ArgumentException>(() => Sgemm.Compute(false, false, 2, 2, 2, 1f, new float[4], 0, 2, new float[4], 0, 2, 1f, new float[4], 0, 2, fold));
    }

    [Fact]
    public void SumsWhoseFoldNoProductAppliedRefuseToEndTheBatch()
    {
        var sums = new GradientSums(16, Accumulation.PerBatch);
        sums.StartFoldedBatch(1.0);
        var e = Assert.Throws<InvalidOperationException>(() => sums.EndBatch(1.0, 3, "layers.0.mlp.up_proj.weight"));
        Assert.Contains("layers.0.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void SumsReportANonFiniteFoldedGradientByTensorBatchAndIndex()
    {
        var sums = new GradientSums(6, Accumulation.PerBatch);
        var fold = sums.StartFoldedBatch(1.0);
        var a = new float[] { 1, float.NaN }; // A is [2, 1]: row 1 of the product is NaN, flat index 3 first
        Sgemm.Compute(false, false, 2, 3, 1, 1f, a, 0, 1, [1f, 2f, 3f], 0, 3, 0f, new float[6], 0, 3, fold);
        var e = Assert.Throws<CwaException>(() => sums.EndBatch(1.0, 4, "layers.1.self_attn.q_proj.weight"));
        Assert.Equal("calibration batch 4: gradient of layers.1.self_attn.q_proj.weight not finite at flat index 3; check the model weights and data", e.Message);
    }

    private static float[] Random(ref SplitMix64 rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)rng.NextGaussian();
        return x;
    }
}
