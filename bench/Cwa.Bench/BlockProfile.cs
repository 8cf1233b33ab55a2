using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;

namespace Cwa.Bench;

/// <summary>
/// `dotnet run --project bench/Cwa.Bench -c Release -- block8b`: where one Llama-3.1-8B block's time goes with the
/// scale benchmark's batch shape (8 sequences, about 720 rows). Times the block's forward and backward as the engine
/// runs them, then each of its GEMMs alone with the same shapes: the gap between the two is the non-GEMM work
/// (norms, RoPE, attention, SwiGLU, residual adds, bias). Weights are random fp32 (one block, a 1,024-token vocabulary).
/// </summary>
internal static class BlockProfile
{
    public static void Run(Peak peak, bool quick)
    {
        var config = TestModelPresets.Config("llama-3.1-8b-shape", 1024) with { NumLayers = 1 };
        var weights = ModelWeights<float>.Random(config, 1);
        var grads = weights.ZerosLike();
        var model = new LlamaModel<float>(weights, new EngineOptions());
        var rng = new Cwa.Core.SplitMix64(5);
        const int batchSize = 8, seq = 128;
        var lengths = Enumerable.Range(0, batchSize).Select(_ => 52 + (int)rng.NextLong(77)).ToArray();
        var tokens = Enumerable.Range(0, batchSize * seq).Select(_ => (int)rng.NextLong(config.VocabSize)).ToArray();
        var batch = new Batch(batchSize, seq, tokens, lengths);
        var ctx = model.Prepare(batch);
        var cache = model.Caches(batch, 1)[0];
        int n = ctx.Count, d = config.HiddenSize, f = config.IntermediateSize, qd = config.QDim, kd = config.KvDim;
        var x0 = model.Embed(ctx).AsSpan(0, n * d).ToArray();
        var x = new float[n * d];
        var dx = new float[n * d];
        int runs = quick ? 2 : 4;
        double forward = Program.BestOf(runs, () => { x0.CopyTo(x, 0); model.ForwardBlock(0, x, cache, ctx, null); });
        double backward = Program.BestOf(runs, () => { x0.CopyTo(dx, 0); model.BackwardBlock(0, cache, dx, grads, ctx); });

        // The block's products: (transA, transB, m, n, k) as LlamaModel issues them.
        var fwd = new (string, bool, bool, int, int, int)[]
        {
            ("q", false, true, n, qd, d), ("k", false, true, n, kd, d), ("v", false, true, n, kd, d),
            ("o", false, true, n, d, qd), ("gate", false, true, n, f, d), ("up", false, true, n, f, d), ("down", false, true, n, d, f),
        };
        var bwd = new (string, bool, bool, int, int, int)[]
        {
            ("dW down", true, false, d, f, n), ("dH", false, false, n, f, d),
            ("dW gate", true, false, f, d, n), ("dW up", true, false, f, d, n), ("dX gate", false, false, n, d, f), ("dX up", false, false, n, d, f),
            ("dW o", true, false, d, qd, n), ("dAtt", false, false, n, qd, d),
            ("dW q", true, false, qd, d, n), ("dW k", true, false, kd, d, n), ("dW v", true, false, kd, d, n),
            ("dX q", false, false, n, d, qd), ("dX k", false, false, n, d, kd), ("dX v", false, false, n, d, kd),
        };
        double peakTotal = peak.GflopsPerCore * Environment.ProcessorCount;
        Console.WriteLine();
        Console.WriteLine($"one llama-3.1-8b-shape block, {n} rows ({batchSize} sequences of {string.Join(",", lengths)}), {Environment.ProcessorCount} threads; peak {peakTotal:F0} GFLOP/s");
        double attFlops = 0;
        foreach (int len in lengths) attFlops += 2.0 * 2 * config.NumHeads * config.HeadDim * len * (len + 1) / 2;
        var (fGemm, fFlops) = Products("forward", fwd, runs, peakTotal);
        var (bGemm, bFlops) = Products("backward", bwd, runs, peakTotal);
        Console.WriteLine($"forward block:  {forward * 1e3,8:F1} ms, {(fFlops + attFlops) / forward / 1e9,6:F1} GFLOP/s ({100 * (fFlops + attFlops) / forward / 1e9 / peakTotal:F1}%); " +
            $"its GEMMs alone {fGemm * 1e3:F1} ms, everything else {(forward - fGemm) * 1e3:F1} ms");
        Console.WriteLine($"backward block: {backward * 1e3,8:F1} ms (recompute not included), {(bFlops + 2 * attFlops) / backward / 1e9,6:F1} GFLOP/s ({100 * (bFlops + 2 * attFlops) / backward / 1e9 / peakTotal:F1}%); " +
            $"its GEMMs alone {bGemm * 1e3:F1} ms, everything else {(backward - bGemm) * 1e3:F1} ms");
    }

    private static (double Seconds, double Flops) Products(string label, (string Name, bool Ta, bool Tb, int M, int N, int K)[] shapes, int runs, double peakTotal)
    {
        double total = 0, flops = 0;
        foreach (var s in shapes)
        {
            var a = new float[s.M * s.K];
            var b = new float[s.N * s.K];
            var c = new float[s.M * s.N];
            Array.Fill(a, 0.01f);
            Array.Fill(b, 0.02f);
            int lda = s.Ta ? s.M : s.K, ldb = s.Tb ? s.K : s.N;
            double t = Program.BestOf(runs, () => Gemm.Compute(s.Ta, s.Tb, s.M, s.N, s.K, 1f, a, 0, lda, b, 0, ldb, 0f, c, 0, s.N));
            double fl = 2.0 * s.M * s.N * s.K;
            Console.WriteLine($"  {label,-8} {s.Name,-8} [{s.M}x{s.N}x{s.K}]{(s.Ta ? " A^T" : "")}{(s.Tb ? " B^T" : "")}: {t * 1e3,7:F1} ms {fl / t / 1e9,7:F1} GFLOP/s {100 * fl / t / 1e9 / peakTotal,5:F1}%");
            total += t;
            flops += fl;
        }
        return (total, flops);
    }
}

/// <summary>`-- load8b --model DIR`: seconds to widen one block of a streamed checkpoint: cold, read ahead in the background 3 s before, and warm in the page cache.</summary>
internal static class LoadProfile
{
    public static void Run(string model)
    {
        using var ckpt = Cwa.Core.Checkpoints.CheckpointFolder.Open(model);
        using var w = new StreamedWeights(ckpt, ckpt.StoredType("model.embed_tokens.weight"));
        for (int round = 0; round < 2; round++)
            for (int l = 0; l < 3; l++)
            {
                if (round == 0 && l > 0) { w.Prefetch(l + 3); Thread.Sleep(3000); }
                var sw = System.Diagnostics.Stopwatch.StartNew();
                w.LoadBlock(l);
                w.ReleaseBlocks();
                Console.WriteLine($"round {round} block {l}: {sw.Elapsed.TotalSeconds:F3} s");
                if (round == 0 && l > 0) { sw.Restart(); w.LoadBlock(l + 3); w.ReleaseBlocks(); Console.WriteLine($"  prefetched block {l + 3}: {sw.Elapsed.TotalSeconds:F3} s"); }
            }
    }
}

/// <summary>`-- pack8b`: one thread packing op(B) of the 8B gate weight for the forward (B^T) and the backward (B), whole matrix.</summary>
internal static class PackProfile
{
    public static void Run()
    {
        const int f = 14336, d = 4096, kc = Sgemm.KC, nc = Sgemm.NC, nr = SgemmKernel512.NR;
        var w = new float[(long)f * d];
        Array.Fill(w, 0.5f);
        var dest = new float[kc * nc];
        foreach (var (label, trans, k, n) in new[] { ("forward  B = W^T [4096 x 14336]", true, d, f), ("backward B = W   [14336 x 4096]", false, f, d) })
        {
            double best = Program.BestOf(3, () =>
            {
                for (int j0 = 0; j0 < n; j0 += nc)
                    for (int p0 = 0; p0 < k; p0 += kc)
                        Packing.PackB(trans, w, 0, trans ? k : n, p0, Math.Min(kc, k - p0), j0, Math.Min(nc, n - j0), nr, dest, 0);
            });
            Console.WriteLine($"pack {label}: {best * 1e3:F1} ms on one thread ({(long)f * d * 4 / best / 1e9:F1} GB/s read)");
        }
    }
}

/// <summary>
/// `-- kernel`: each micro-kernel this machine runs, alone on cache-resident panels of the engine's depth KC (what the
/// GEMMs can reach at best with it). The narrower ones are what machines without AVX-512 get.
/// </summary>
internal static unsafe class KernelProfile
{
    public static void Run(Peak peak)
    {
        const int kc = Sgemm.KC, calls = 100_000;
        foreach (var kernel in MicroKernels.Supported.Where(k => k != MicroKernel.Reference).Reverse())
        {
            var (mr, nr) = MicroKernels.Tile(kernel);
            var a = GC.AllocateArray<float>(mr * kc, pinned: true);
            var b = GC.AllocateArray<float>(nr * kc, pinned: true);
            var c = GC.AllocateArray<float>(mr * nr, pinned: true);
            Array.Fill(a, 0.001f);
            Array.Fill(b, 0.002f);
            fixed (float* pa = a, pb = b, pc = c)
            {
                float* ap = pa, bp = pb, cp = pc;
                double best = Program.BestOf(5, () =>
                {
                    for (int i = 0; i < calls; i++) MicroKernels.Run(kernel, kc, ap, bp, cp, nr, mr, nr, 1f, 1f);
                });
                double flops = 2.0 * mr * nr * kc * calls;
                Console.WriteLine($"micro-kernel {kernel} {mr}x{nr}, kc {kc}, one thread: {flops / best / 1e9:F1} GFLOP/s = {100 * flops / best / 1e9 / peak.GflopsPerCore:F1}% of one core's (AVX-512) peak");
            }
        }
    }
}

/// <summary>
/// `-- dw8b`: one 8B block's weight-gradient products as the layer-major backward runs them, into model-sized sums
/// (cold in cache): added into C (beta 1, grad_x_weight), written to C (beta 0), and folded from the cache into a
/// sum and its squares (Fisher). Says what moving a batch's gradient through memory costs against folding it.
/// </summary>
internal static class WeightGradientProfile
{
    public static void Run(Peak peak)
    {
        var config = TestModelPresets.Config("llama-3.1-8b-shape", 1024);
        int n = 720, d = config.HiddenSize, f = config.IntermediateSize, qd = config.QDim, kd = config.KvDim;
        var shapes = new (string Name, int M, int N)[] { ("down", d, f), ("gate", f, d), ("up", f, d), ("o", d, qd), ("q", qd, d), ("k", kd, d), ("v", kd, d) };
        double peakTotal = peak.GflopsPerCore * Environment.ProcessorCount;
        var dy = Program.Random(f * n, 3);
        var x = Program.Random(f * n, 4);
        Console.WriteLine($"8B weight-gradient products, depth {n}, {Environment.ProcessorCount} threads; peak {peakTotal:F0} GFLOP/s");
        for (int round = 0; round < 3; round++)
        {
            double add = 0, write = 0, fold = 0, flops = 0;
            foreach (var s in shapes)
            {
                long len = (long)s.M * s.N;
                var c = HugePageArrays.Zeroed(len);
                var total = HugePageArrays.Zeroed(len);
                var squares = HugePageArrays.Zeroed(len);
                var gf = new GemmFold(total, squares);
                flops += 2.0 * s.M * s.N * n;
                add += Time(() => Sgemm.Compute(true, false, s.M, s.N, n, 1f, dy, 0, s.M, x, 0, s.N, 1f, c, 0, s.N));
                write += Time(() => Sgemm.Compute(true, false, s.M, s.N, n, 1f, dy, 0, s.M, x, 0, s.N, 0f, c, 0, s.N));
                fold += Time(() => { gf.Start(1.0, first: false); Sgemm.Compute(true, false, s.M, s.N, n, 1f, dy, 0, s.M, x, 0, s.N, 0f, [], 0, s.N, gf); });
            }
            Console.WriteLine($"round {round}: beta 1 {add * 1e3,7:F0} ms ({100 * flops / add / 1e9 / peakTotal:F1}%)  beta 0 {write * 1e3,7:F0} ms ({100 * flops / write / 1e9 / peakTotal:F1}%)  " +
                $"fold {fold * 1e3,7:F0} ms ({100 * flops / fold / 1e9 / peakTotal:F1}%)");
        }
    }

    private static double Time(Action a)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalSeconds;
    }
}
