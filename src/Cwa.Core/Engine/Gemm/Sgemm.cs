using System.Runtime.Intrinsics.X86;

namespace Cwa.Core.Engine;

/// <summary>
/// Packed, cache-blocked SGEMM in the GotoBLAS/BLIS style. For each (NC column block, KC depth block) op(B) is
/// packed once into NR-wide panels (L2/L3 resident), then row blocks of MC rows are packed into MR-tall panels
/// (L1/L2 resident) and swept by the register-blocked micro-kernel. Packing absorbs all transpose cases.
/// Threads split the columns of wide products and the MC row blocks of narrower ones; either way the KC order is
/// fixed, so every element of C is summed in the same order whatever the thread count: results are bit-identical
/// across runs and thread counts.
/// </summary>
internal static unsafe class Sgemm
{
    // KC 512 rather than 256 halves the trips of each C tile through the caches; measured on the 8B shapes
    // (683 rows) it was 5-8% faster on one thread and 5-15% on two, and 1024 gained nothing more.
    internal const int KC = 512;
    private const int MC = 48;
    internal const int NC = 2048;
    /// <summary>Columns per thread from which threads split op(B)'s columns instead of C's rows (see Compute).</summary>
    private const int SplitColumns = 1024;
    private const long SmallWork = 32L * 32 * 32;
    private const long ParallelWork = 1L << 21;

    private static readonly bool Use512 = Avx512F.IsSupported;
    private static readonly bool Use256 = Fma.IsSupported && Avx2.IsSupported;

    [ThreadStatic] private static float[]? _packA;
    [ThreadStatic] private static float[]? _packBLocal;
    [ThreadStatic] internal static bool InsideParallel;
    private static float[] _packB = [];
    private static readonly Lock PackBLock = new();

    public static void Compute(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOffset, int lda, float[] b, int bOffset, int ldb, float beta, float[] c, int cOffset, int ldc)
    {
        if (k == 0 || alpha == 0f)
        {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    ref float cv = ref c[cOffset + i * ldc + j];
                    cv = beta == 0f ? 0f : beta * cv;
                }
            return;
        }
        if ((long)m * n * k < SmallWork || !(Use512 || Use256))
        {
            ReferenceGemm.Compute(transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc);
            return;
        }
        int mr = Use512 ? SgemmKernel512.MR : SgemmKernel256.MR;
        int nr = Use512 ? SgemmKernel512.NR : SgemmKernel256.NR;
        bool parallel = !InsideParallel && Gemm.MaxThreads > 1 && (long)m * n * k >= ParallelWork;
        if (parallel && n >= Gemm.MaxThreads * SplitColumns)
        {
            // Wide products (every 8B-shaped one but k/v's forward) give each thread its own columns: it packs its own
            // op(B) and never waits for or reads the other's, where splitting rows shares one packed op(B) and meets at
            // a barrier after every KC step. 3-20% faster on the 8B shapes; narrower products (the small preset's,
            // 256-704 columns a thread) lost 3-12% packing op(A) twice, so they keep splitting rows.
            int threads = Gemm.MaxThreads, share = RoundUp((n + threads - 1) / threads, nr);
            Parallel.For(0, (n + share - 1) / share, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                InsideParallel = true;
                try
                {
                    int j = t * share;
                    Compute(transA, transB, m, Math.Min(share, n - j), k, alpha, a, aOffset, lda, b, bOffset + (transB ? j * ldb : j), ldb, beta, c, cOffset + j, ldc);
                }
                finally { InsideParallel = false; }
            });
            return;
        }
        parallel &= m > MC;
        // The shared B pack buffer is only safe while one GEMM at a time uses it; nested or concurrent callers
        // (attention heads run GEMMs from parallel loops) get a private buffer instead.
        float[] packB;
        bool ownsShared = parallel && PackBLock.TryEnter();
        int nc = Math.Min(NC, RoundUp(n, nr));
        int packBSize = KC * nc;
        if (ownsShared)
        {
            if (_packB.Length < packBSize) _packB = GC.AllocateUninitializedArray<float>(packBSize, pinned: true);
            packB = _packB;
        }
        else
        {
            if (_packBLocal == null || _packBLocal.Length < packBSize)
                _packBLocal = GC.AllocateUninitializedArray<float>(packBSize, pinned: true);
            packB = _packBLocal;
            parallel = false;
        }
        try
        {
            for (int j0 = 0; j0 < n; j0 += NC)
            {
                int ncur = Math.Min(NC, n - j0);
                for (int p0 = 0; p0 < k; p0 += KC)
                {
                    int kcur = Math.Min(KC, k - p0);
                    float betaEff = p0 == 0 ? beta : 1f;
                    if (parallel)
                    {
                        // Packing op(B) is O(k n) per block; on one thread it idles the others at m ~ 1000 tokens.
                        int panels = (ncur + nr - 1) / nr, perTask = (panels + Gemm.MaxThreads - 1) / Gemm.MaxThreads;
                        Parallel.For(0, (panels + perTask - 1) / perTask, new ParallelOptions { MaxDegreeOfParallelism = Gemm.MaxThreads }, task =>
                        {
                            int first = task * perTask * nr, cols = Math.Min(perTask * nr, ncur - first);
                            Packing.PackB(transB, b, bOffset, ldb, p0, kcur, j0 + first, cols, nr, packB, first / nr * kcur * nr);
                        });
                    }
                    else
                        Packing.PackB(transB, b, bOffset, ldb, p0, kcur, j0, ncur, nr, packB, 0);
                    int mBlocks = (m + MC - 1) / MC;
                    if (parallel)
                    {
                        // Each thread takes an equal share of the rows (in whole micro-tiles) and walks it in MC blocks.
                        // Handing out MC blocks one by one left one thread a block more than the other at token counts
                        // like 683 (15 blocks over 2 threads): 11% of every activation-sized product idled.
                        int threads = Gemm.MaxThreads, share = (m + mr - 1) / mr;
                        share = (share + threads - 1) / threads * mr;
                        var opts = new ParallelOptions { MaxDegreeOfParallelism = threads };
                        Parallel.For(0, (m + share - 1) / share, opts, t =>
                        {
                            InsideParallel = true;
                            try
                            {
                                int end = Math.Min(m, (t + 1) * share);
                                for (int i0 = t * share; i0 < end; i0 += MC)
                                    Block(transA, a, aOffset, lda, end, i0, p0, kcur, j0, ncur, mr, nr, packB, alpha, betaEff, c, cOffset, ldc);
                            }
                            finally { InsideParallel = false; }
                        });
                    }
                    else
                    {
                        for (int ib = 0; ib < mBlocks; ib++)
                            Block(transA, a, aOffset, lda, m, ib * MC, p0, kcur, j0, ncur, mr, nr, packB, alpha, betaEff, c, cOffset, ldc);
                    }
                }
            }
        }
        finally
        {
            if (ownsShared) PackBLock.Exit();
        }
    }

    private static void Block(bool transA, float[] a, int aOffset, int lda, int m, int i0, int p0, int kcur,
        int j0, int ncur, int mr, int nr, float[] packB, float alpha, float beta, float[] c, int cOffset, int ldc)
    {
        int mcur = Math.Min(MC, m - i0);
        int need = RoundUp(MC, mr) * KC;
        var packA = _packA;
        if (packA == null || packA.Length < need)
            _packA = packA = GC.AllocateUninitializedArray<float>(need, pinned: true);
        Packing.PackA(transA, a, aOffset, lda, i0, mcur, p0, kcur, mr, packA);
        fixed (float* pa = packA, pb = packB, pc = c)
        {
            for (int jr = 0; jr < ncur; jr += nr)
            {
                int nrCur = Math.Min(nr, ncur - jr);
                float* bp = pb + (jr / nr) * kcur * nr;
                for (int ir = 0; ir < mcur; ir += mr)
                {
                    int mrCur = Math.Min(mr, mcur - ir);
                    float* ap = pa + (ir / mr) * kcur * mr;
                    float* cp = pc + cOffset + (long)(i0 + ir) * ldc + j0 + jr;
                    if (Use512)
                    {
                        if (mrCur == mr && nrCur == nr) SgemmKernel512.Full(kcur, ap, bp, cp, ldc, alpha, beta);
                        else SgemmKernel512.Edge(kcur, ap, bp, cp, ldc, mrCur, nrCur, alpha, beta);
                    }
                    else
                    {
                        if (mrCur == mr && nrCur == nr) SgemmKernel256.Full(kcur, ap, bp, cp, ldc, alpha, beta);
                        else SgemmKernel256.Edge(kcur, ap, bp, cp, ldc, mrCur, nrCur, alpha, beta);
                    }
                }
            }
        }
    }

    internal static int RoundUp(int x, int m) => (x + m - 1) / m * m;
}
