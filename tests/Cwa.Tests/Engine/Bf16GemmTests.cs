using System.Runtime.InteropServices;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>Products whose B is a bf16 matrix widened while it is packed: the same bits as on B's fp32 widening.</summary>
public unsafe class Bf16GemmTests
{
    // (m, n, k): the reference loop (tiny), one thread's packed path with edge panels, rows split between threads,
    // columns split (n of 2,048 or more), and a depth of two SGEMM steps (over 1,024); on every micro-kernel.
    public static TheoryData<string, int, int, int> Shapes =>
        KernelCases.Each(new() { { 5, 7, 9 }, { 37, 45, 70 }, { 130, 300, 517 }, { 50, 2093, 130 }, { 60, 90, 1100 } });

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AProductOnBf16BIsBitForBitTheProductOnItsWidening(string kernel, int m, int n, int k)
    {
        using var selected = KernelCases.Use(kernel);
        int saved = Gemm.MaxThreads;
        try
        {
            foreach (bool transB in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                    foreach (float beta in new[] { 0f, 1f })
                    {
                        Gemm.MaxThreads = threads;
                        int ldb = (transB ? k : n) + 3; // a stride wider than the rows, as a sub-matrix has
                        long extent = (long)(transB ? n : k) * ldb;
                        var stored = Bf16Values(extent, (ulong)(m + n + k));
                        var widened = new float[extent];
                        DTypeConversion.Bf16ToFloat(stored, widened);
                        var a = Floats(m * k, 2);
                        var start = Floats(m * n, 3);
                        var expected = (float[])start.Clone();
                        var actual = (float[])start.Clone();
                        Sgemm.Compute(false, transB, m, n, k, 1f, a, 0, k, widened, 0, ldb, beta, expected, 0, n);
                        fixed (ushort* p = stored)
                            Sgemm.Compute(false, transB, m, n, k, 1f, a, 0, k, new Bf16Matrix(p, extent), ldb, beta, actual, 0, n);
                        Assert.True(MemoryMarshal.AsBytes(expected.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(actual.AsSpan())),
                            $"transB {transB}, {threads} threads, beta {beta}");
                    }
        }
        finally { Gemm.MaxThreads = saved; }
    }

    [Fact]
    public void AProductThatWouldReadPastTheMatrixIsRefused()
    {
        var stored = Bf16Values(64 * 64 - 1, 1);
        var c = new float[64 * 64];
        fixed (ushort* p = stored)
        {
            var b = new Bf16Matrix(p, stored.Length);
            var small = new Bf16Matrix(p, 15);
            Assert.Throws<ArgumentOutOfRangeException>(() => Sgemm.Compute(false, true, 64, 64, 64, 1f, Floats(64 * 64, 1), 0, 64, b, 64, 0f, c, 0, 64));
            Assert.Throws<ArgumentOutOfRangeException>(() => Sgemm.Compute(false, false, 4, 4, 4, 1f, Floats(16, 1), 0, 4, small, 4, 0f, c, 0, 4));
        }
    }

    private static ushort[] Bf16Values(long n, ulong seed)
    {
        var rng = new SplitMix64(seed);
        var v = new ushort[n];
        for (long i = 0; i < n; i++) v[i] = DTypeConversion.FloatToBf16((float)(rng.NextDouble() - 0.5));
        return v;
    }

    private static float[] Floats(int n, ulong seed)
    {
        var rng = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
    }
}
