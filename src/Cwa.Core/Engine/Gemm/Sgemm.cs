namespace Cwa.Core.Engine;

/// <summary>
/// Packed, cache-blocked SGEMM in the GotoBLAS/BLIS style. For each (NC column block, KC depth block) op(B) is
/// packed once into NR-wide panels (L2/L3 resident), then row blocks of MC rows are packed into MR-tall panels
/// (L1/L2 resident) and swept by the register-blocked micro-kernel. Packing absorbs all transpose cases.
/// Threads split the columns of wide products and the MC row blocks of narrower ones; either way the KC order is
/// fixed, so every element of C is summed in the same order whatever the thread count: results are bit-identical
/// across runs and thread counts. The micro-kernel is the machine's widest (<see cref="MicroKernels"/>); kernels of
/// different widths round differently, so bit-identity holds for one kernel.
/// </summary>
internal static unsafe class Sgemm
{
    // KC 512 rather than 256 halves the trips of each C tile through the caches; measured on the 8B shapes
    // (683 rows) it was 5-8% faster on one thread and 5-15% on two, and 1024 gained nothing more.
    internal const int KC = 512;
    /// <summary>
    /// Depths up to this run in one step: a weight gradient's depth is its batch's rows (up to 1,024 at 8 x 128), and
    /// a folded product (<see cref="GemmFold"/>) of one step never writes C. One step of 683 measured the same speed as
    /// 512 + 171 on the 8B weight-gradient shapes (0.98-1.03 times, medians of 6 interleaved rounds).
    /// </summary>
    internal const int KCSingle = 1024;
    private const int MC = 48;
    internal const int NC = 2048;
    /// <summary>Columns per thread from which threads split op(B)'s columns instead of C's rows (see Compute).</summary>
    private const int SplitColumns = 1024;
    private const long SmallWork = 32L * 32 * 32;
    private const long ParallelWork = 1L << 21;

    [ThreadStatic] private static float[]? _packA;
    [ThreadStatic] private static float[]? _packBLocal;
    [ThreadStatic] private static float[]? _foldTile;
    [ThreadStatic] internal static bool InsideParallel;
    private static float[] _packB = [];
    private static readonly Lock PackBLock = new();

    /// <summary>
    /// Whether a folded product of this shape writes its C (see <see cref="Compute"/>'s fold): deeper than one step, too
    /// small for the packed path, or without a vector kernel. Otherwise C may be empty and need not exist at all.
    /// </summary>
    internal static bool FoldWritesC(int m, int n, int k) => k == 0 || k > KCSingle || (long)m * n * k < SmallWork || !Vectorised;

    /// <summary>Whether the calling flow's products run the packed path (a vector micro-kernel); otherwise every product takes the reference loop.</summary>
    internal static bool Vectorised => MicroKernels.Current != MicroKernel.Reference;

    /// <param name="fold">
    /// when given (beta must be 0), C's values are added to the fold's running sums as they are finished, and C is only
    /// scratch: products of depth up to <see cref="KCSingle"/> never write it (C may then be empty, see
    /// <see cref="FoldWritesC"/>), deeper ones leave it undefined.
    /// </param>
    public static void Compute(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOffset, int lda, float[] b, int bOffset, int ldb, float beta, float[] c, int cOffset, int ldc, GemmFold? fold = null) =>
        Compute(transA, transB, m, n, k, alpha, a, aOffset, lda, new FloatB(b, bOffset), ldb, beta, c, cOffset, ldc, fold, MicroKernels.Current);

    /// <summary>The same product with B a bf16 matrix (a streamed weight as mapped), widened panel by panel while it is packed.</summary>
    public static void Compute(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOffset, int lda, Bf16Matrix b, int ldb, float beta, float[] c, int cOffset, int ldc) =>
        Compute(transA, transB, m, n, k, alpha, a, aOffset, lda, b, ldb, beta, c, cOffset, ldc, null, MicroKernels.Current);

    private static void Compute<TB>(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOffset, int lda, TB b, int ldb, float beta, float[] c, int cOffset, int ldc, GemmFold? fold, MicroKernel kernel)
        where TB : struct, IGemmB<TB>
    {
        if (fold != null && beta != 0f) throw new ArgumentException("a folded product overwrites its scratch C: beta must be 0", nameof(beta));
        if (fold != null && c.Length == 0 && (alpha == 0f || FoldWritesC(m, n, k)))
            throw new ArgumentException($"a folded {m} x {n} product of depth {k} writes C: it needs a C to write", nameof(c));
        if (k == 0 || alpha == 0f)
        {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    ref float cv = ref c[cOffset + i * ldc + j];
                    cv = beta == 0f ? 0f : beta * cv;
                }
            FoldRows(fold, c, cOffset, ldc, 0, m, 0, n);
            return;
        }
        if ((long)m * n * k < SmallWork || kernel == MicroKernel.Reference)
        {
            var (bDense, bOffset) = b.Dense(transB, n, k, ldb);
            ReferenceGemm.Compute(transA, transB, m, n, k, alpha, a, aOffset, lda, bDense, bOffset, ldb, beta, c, cOffset, ldc);
            FoldRows(fold, c, cOffset, ldc, 0, m, 0, n);
            return;
        }
        var (mr, nr) = MicroKernels.Tile(kernel);
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
                    Compute(transA, transB, m, Math.Min(share, n - j), k, alpha, a, aOffset, lda, b.Skip(transB ? (long)j * ldb : j), ldb, beta, c, cOffset + j, ldc, fold, kernel);
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
        // Whole panels: NC is not a multiple of every kernel's NR (12 for the 128-bit one).
        int nc = RoundUp(Math.Min(NC, n), nr);
        int kc = k <= KCSingle ? k : KC;
        int packBSize = kc * nc;
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
                for (int p0 = 0; p0 < k; p0 += kc)
                {
                    int kcur = Math.Min(kc, k - p0);
                    float betaEff = p0 == 0 ? beta : 1f;
                    var lastFold = p0 + kcur == k ? fold : null;
                    if (parallel)
                    {
                        // Packing op(B) is O(k n) per block; on one thread it idles the others at m ~ 1000 tokens.
                        int panels = (ncur + nr - 1) / nr, perTask = (panels + Gemm.MaxThreads - 1) / Gemm.MaxThreads;
                        Parallel.For(0, (panels + perTask - 1) / perTask, new ParallelOptions { MaxDegreeOfParallelism = Gemm.MaxThreads }, task =>
                        {
                            int first = task * perTask * nr, cols = Math.Min(perTask * nr, ncur - first);
                            b.Pack(transB, ldb, p0, kcur, j0 + first, cols, nr, packB, first / nr * kcur * nr);
                        });
                    }
                    else
                        b.Pack(transB, ldb, p0, kcur, j0, ncur, nr, packB, 0);
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
                                    Block(kernel, transA, a, aOffset, lda, end, i0, p0, kcur, j0, ncur, packB, alpha, betaEff, c, cOffset, ldc, lastFold, kcur == k);
                            }
                            finally { InsideParallel = false; }
                        });
                    }
                    else
                    {
                        for (int ib = 0; ib < mBlocks; ib++)
                            Block(kernel, transA, a, aOffset, lda, m, ib * MC, p0, kcur, j0, ncur, packB, alpha, betaEff, c, cOffset, ldc, lastFold, kcur == k);
                    }
                }
            }
        }
        finally
        {
            if (ownsShared) PackBLock.Exit();
        }
        fold?.MarkApplied();
    }

    /// <summary>Hands rows [i0, i1) x columns [j0, j1) of C to the fold (no fold: nothing).</summary>
    private static void FoldRows(GemmFold? fold, float[] c, int cOffset, int ldc, int i0, int i1, int j0, int j1)
    {
        if (fold == null) return;
        for (int i = i0; i < i1; i++) fold.Row(c.AsSpan(cOffset + i * ldc + j0, j1 - j0), cOffset + i * ldc + j0);
        fold.MarkApplied();
    }

    /// <param name="fold">the product's fold, on its last depth step only: the block's finished rows go to it</param>
    /// <param name="wholeDepth">this step is the product's whole depth, so C's values exist nowhere else and a fold
    /// takes them from a per-thread tile instead of C (C is then never written)</param>
    private static void Block(MicroKernel kernel, bool transA, float[] a, int aOffset, int lda, int m, int i0, int p0, int kcur,
        int j0, int ncur, float[] packB, float alpha, float beta, float[] c, int cOffset, int ldc,
        GemmFold? fold = null, bool wholeDepth = false)
    {
        var (mr, nr) = MicroKernels.Tile(kernel);
        int mcur = Math.Min(MC, m - i0);
        int need = RoundUp(MC, mr) * kcur;
        var packA = _packA;
        if (packA == null || packA.Length < need)
            _packA = packA = GC.AllocateUninitializedArray<float>(need, pinned: true);
        Packing.PackA(transA, a, aOffset, lda, i0, mcur, p0, kcur, mr, packA);
        if (fold != null && wholeDepth)
        {
            // The tile is C's MC x NC block at row stride NC; beta is 0 here (the first and only step of a folded product).
            var tile = _foldTile ??= GC.AllocateUninitializedArray<float>(MC * NC, pinned: true);
            Sweep(kernel, packA, packB, tile, 0, NC, mcur, ncur, kcur, alpha, beta);
            for (int r = 0; r < mcur; r++) fold.Row(tile.AsSpan(r * NC, ncur), cOffset + (i0 + r) * ldc + j0);
            return;
        }
        Sweep(kernel, packA, packB, c, cOffset + i0 * ldc + j0, ldc, mcur, ncur, kcur, alpha, beta);
        if (fold != null) FoldRows(fold, c, cOffset, ldc, i0, i0 + mcur, j0, j0 + ncur);
    }

    /// <summary>The micro-kernel over one packed MC x KC block of op(A) and KC x NC block of op(B), into C at c[cAt] (stride ldc).</summary>
    private static void Sweep(MicroKernel kernel, float[] packA, float[] packB, float[] c, int cAt, int ldc, int mcur, int ncur, int kcur, float alpha, float beta)
    {
        var (mr, nr) = MicroKernels.Tile(kernel);
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
                    float* cp = pc + cAt + (long)ir * ldc + jr;
                    MicroKernels.Run(kernel, kcur, ap, bp, cp, ldc, mrCur, nrCur, alpha, beta);
                }
            }
        }
    }

    internal static int RoundUp(int x, int m) => (x + m - 1) / m * m;
}
