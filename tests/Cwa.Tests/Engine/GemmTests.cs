using Cwa.Core;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

public class GemmTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 7, 13, 5 }, { 33, 65, 17 }, { 100, 1, 300 }, { 1, 257, 64 }, { 129, 130, 131 }, { 257, 300, 513 },
        // Wide enough that threads split the columns (a partial last share, rows under one MC block, two KC steps).
        { 20, 2093, 530 },
    };

    public static TheoryData<string, int, int, int> KernelShapes => KernelCases.Each(Shapes);

    [Theory]
    [MemberData(nameof(KernelShapes))]
    public void FloatMatchesDoubleReferenceForAllTransposesAndBetas(string kernel, int m, int n, int k)
    {
        using var selected = KernelCases.Use(kernel);
        var rng = new SplitMix64(7);
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
                foreach (float beta in new[] { 0f, 1f, 0.5f })
                {
                    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                    int aOff = 4, bOff = 1, cOff = 2;
                    var a = Random(ref rng, aOff + (ta ? k : m) * lda);
                    var b = Random(ref rng, bOff + (tb ? n : k) * ldb);
                    var c = Random(ref rng, cOff + m * ldc);
                    if (beta == 0f) Array.Fill(c, float.NaN);
                    var expected = (float[])c.Clone();
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double s = 0;
                            for (int p = 0; p < k; p++)
                                s += (double)(ta ? a[aOff + p * lda + i] : a[aOff + i * lda + p]) * (tb ? b[bOff + j * ldb + p] : b[bOff + p * ldb + j]);
                            double old = beta == 0f ? 0 : expected[cOff + i * ldc + j];
                            expected[cOff + i * ldc + j] = (float)(1.5 * s + beta * old);
                        }
                    Gemm.Compute(ta, tb, m, n, k, 1.5f, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
                    double tol = 1e-5 * Math.Sqrt(k) * 4;
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            float e = expected[cOff + i * ldc + j], got = c[cOff + i * ldc + j];
                            Assert.True(Math.Abs(e - got) <= tol * (1 + Math.Abs(e)), $"ta={ta} tb={tb} beta={beta} [{i},{j}] expected {e} got {got}");
                        }
                    // Padding between rows must be untouched.
                    if (ldc > n && m > 0) Assert.Equal(expected[cOff + n], c[cOff + n]);
                }
    }

    [Fact]
    public void DoubleIsExactToRoundoff()
    {
        var rng = new SplitMix64(3);
        int m = 9, n = 11, k = 13;
        var a = Enumerable.Range(0, m * k).Select(_ => rng.NextGaussian()).ToArray();
        var b = Enumerable.Range(0, n * k).Select(_ => rng.NextGaussian()).ToArray();
        var c = new double[m * n];
        Gemm.Compute(false, true, m, n, k, 1.0, a, 0, k, b, 0, k, 0.0, c, 0, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
                Assert.Equal(s, c[i * n + j], 12);
            }
    }

    /// <summary>Threads split rows (narrow products) or columns (wide ones); neither may change a single bit.</summary>
    public static TheoryData<string, int, int, int> ThreadShapes => KernelCases.Each(new() { { 512, 384, 700 }, { 70, 3300, 1100 } });

    [Theory]
    [MemberData(nameof(ThreadShapes))]
    public void ResultsAreBitIdenticalAcrossThreadCounts(string kernel, int m, int n, int k)
    {
        using var selected = KernelCases.Use(kernel);
        var rng = new SplitMix64(11);
        var a = Random(ref rng, m * k);
        var b = Random(ref rng, n * k);
        int saved = Gemm.MaxThreads;
        try
        {
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                {
                    float[]? first = null;
                    foreach (int threads in new[] { 1, 2, 3 })
                    {
                        Gemm.MaxThreads = threads;
                        var c = new float[m * n];
                        Gemm.Compute(ta, tb, m, n, k, 1f, a, 0, ta ? m : k, b, 0, tb ? k : n, 0f, c, 0, n);
                        if (first == null) first = c;
                        else Assert.Equal(first, c);
                    }
                }
        }
        finally { Gemm.MaxThreads = saved; }
    }

    private static float[] Random(ref SplitMix64 rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)rng.NextGaussian();
        return x;
    }
}
