using System.Diagnostics;
using System.Globalization;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;

namespace Cwa.Bench;

/// <summary>
/// `dotnet run --project bench/Cwa.Bench -c Release -- engine [--ghz G] [--quick] [--kernel avx2|vector128|reference]`: SGEMM GFLOP/s against this
/// machine's theoretical FP32 FMA peak, then forward+backward throughput on the small preset with 256-token
/// sequences. Timings are best-of-N after warmup (Stopwatch), not a statistical harness: quote them with the machine.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string section = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal)) ?? "engine";
        bool quick = args.Contains("--quick");
        double nominal = CpuGhz(), measured = MeasureGhz();
        double ghz = Option(args, "--ghz") ?? Math.Max(nominal, measured);
        var peak = Peak.Of(ghz);
        Console.WriteLine($"machine: {Environment.ProcessorCount} threads; clock: /proc/cpuinfo {nominal:F2} GHz, measured {measured:F2} GHz " +
            $"(dependent multiply chain); peak uses {ghz:F2} GHz ({peak.Description})");
        Console.WriteLine($"theoretical FP32 peak: {peak.GflopsPerCore:F1} GFLOP/s per core, {peak.GflopsPerCore * Environment.ProcessorCount:F1} GFLOP/s total");
        // --kernel NAME runs the sections on a narrower micro-kernel than this machine's best (what AVX2 or ARM64 machines run).
        int kernelAt = Array.IndexOf(args, "--kernel");
        using var kernel = kernelAt >= 0 ? MicroKernels.Use(Enum.Parse<MicroKernel>(args[kernelAt + 1], ignoreCase: true)) : null;
        Console.WriteLine($"micro-kernel: {MicroKernels.Current}");
        if (section is "gemm" or "engine") GemmSection(peak, quick);
        if (section is "engine" or "forward") EngineSection(peak, quick);
        if (section is "engine" or "scoring") ScoringSection(quick);
        if (section == "scale8b") ScaleBenchmark.Run(args, peak, ghz);
        if (section == "block8b") BlockProfile.Run(peak, quick);
        if (section == "pack8b") PackProfile.Run();
        if (section == "kernel") KernelProfile.Run(peak);
        if (section == "dw8b") WeightGradientProfile.Run(peak);
        if (section == "load8b") LoadProfile.Run(args[Array.IndexOf(args, "--model") + 1]);
        return 0;
    }

    private static void GemmSection(Peak peak, bool quick)
    {
        Console.WriteLine();
        Console.WriteLine("SGEMM (row-major, C = A * B^T unless noted)                 threads   best ms    GFLOP/s   % of peak");
        var shapes = new List<(string Name, bool Ta, bool Tb, int M, int N, int K)>
        {
            ("square 256", false, true, 256, 256, 256),
            ("square 512", false, true, 512, 512, 512),
            ("square 1024", false, true, 1024, 1024, 1024),
        };
        if (!quick) shapes.Add(("square 2048", false, true, 2048, 2048, 2048));
        shapes.Add(("linear fwd  Y[2048,1408] = X[2048,512] W^T", false, true, 2048, 1408, 512));
        shapes.Add(("linear fwd  Y[1024,1408] = X[1024,512] W^T", false, true, 1024, 1408, 512));
        shapes.Add(("linear fwd  Y[1024,512] = H[1024,1408] Wd^T", false, true, 1024, 512, 1408));
        shapes.Add(("backward dW[1408,512] = dY^T X", true, false, 1408, 512, 2048));
        shapes.Add(("backward dX[2048,512] = dY W", false, false, 2048, 512, 1408));
        foreach (int threads in new[] { 1, Environment.ProcessorCount }.Distinct())
            foreach (var s in shapes)
            {
                var a = Random(s.M * s.K, 1);
                var b = Random(s.N * s.K, 2);
                var c = new float[s.M * s.N];
                Gemm.MaxThreads = threads;
                int lda = s.Ta ? s.M : s.K, ldb = s.Tb ? s.K : s.N;
                double best = BestOf(quick ? 3 : 7, () => Gemm.Compute(s.Ta, s.Tb, s.M, s.N, s.K, 1f, a, 0, lda, b, 0, ldb, 0f, c, 0, s.N));
                double gflops = 2.0 * s.M * s.N * s.K / best / 1e9;
                double percent = 100 * gflops / (peak.GflopsPerCore * threads);
                // A rate above the peak means the clock probe was slowed by other work: no percentage is better than a false one.
                string share = percent <= 100 ? $"{percent,10:F1}%" : "       n/a  (above the probed peak: the machine was busy during the clock probe; rerun)";
                Console.WriteLine($"{s.Name,-58} {threads,7} {best * 1e3,9:F2} {gflops,10:F1} {share}");
            }
        Gemm.MaxThreads = Environment.ProcessorCount;
    }

    private static void EngineSection(Peak peak, bool quick)
    {
        var config = TestModelPresets.Config("small", 8192);
        var weights = ModelWeights<float>.Random(config, 1);
        var model = new LlamaModel<float>(weights, new EngineOptions());
        var grads = weights.ZerosLike();
        int batch = quick ? 2 : 4, seq = 256;
        var rng = new Cwa.Core.SplitMix64(7);
        var tokens = Enumerable.Range(0, batch * seq).Select(_ => (int)rng.NextLong(config.VocabSize)).ToArray();
        var b = new Batch(batch, seq, tokens, Enumerable.Repeat(seq, batch).ToArray());
        long n = (long)batch * seq;
        double fwdFlops = FlopCount.Forward(config, b);
        double fwd = BestOf(quick ? 2 : 3, () => model.ForwardLoss(b));
        double fb = BestOf(quick ? 2 : 3, () => { grads.Clear(); model.ForwardBackward(b, grads); });
        Console.WriteLine();
        Console.WriteLine($"engine, small preset ({weights.ParameterCount / 1e6:F1} M parameters), batch {batch} x {seq} tokens, {Environment.ProcessorCount} threads");
        Console.WriteLine($"forward:            {fwd * 1e3,8:F0} ms  {n / fwd,8:F0} tokens/s  {fwdFlops / fwd / 1e9,7:F1} GFLOP/s  {100 * fwdFlops / fwd / 1e9 / (peak.GflopsPerCore * Environment.ProcessorCount),5:F1}% of peak");
        Console.WriteLine($"forward + backward: {fb * 1e3,8:F0} ms  {n / fb,8:F0} tokens/s  {3 * fwdFlops / fb / 1e9,7:F1} GFLOP/s  {100 * 3 * fwdFlops / fb / 1e9 / (peak.GflopsPerCore * Environment.ProcessorCount),5:F1}% of peak");
    }

    /// <summary>
    /// Effective clock of one core from a chain of dependent 64-bit multiplies (3-cycle latency on Zen and recent
    /// Intel cores), which the JIT cannot shorten. In a VM /proc/cpuinfo shows the nominal clock while turbo runs
    /// above it, so a peak computed from it would be too low (and efficiencies above 100%).
    /// </summary>
    private static double MeasureGhz()
    {
        const int iterations = 20_000_000;
        double best = double.MaxValue;
        ulong x = 1;
        // Rounds spread over a second: a probe that happened to share the core with other work would set the clock
        // (and so the peak) too low and print efficiencies above 100%; the fastest round is the clock.
        for (int run = 0; run < 10; run++)
        {
            if (run % 3 == 2) Thread.Sleep(150);
            ulong m = 0x9E3779B97F4A7C15UL + (ulong)run * 2;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < iterations; i++)
            {
                x *= m; x *= m; x *= m; x *= m; x *= m; x *= m; x *= m; x *= m;
            }
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        if (x == 42) Console.Write(""); // x must be used, or the chain could be removed
        return 8.0 * 3 * iterations / best / 1e9;
    }

    /// <summary>Per-weight cost of the streaming stages that run on every score (8.03 B of them for Llama-3.1-8B).</summary>
    private static void ScoringSection(bool quick)
    {
        int n = quick ? 1 << 24 : 1 << 26;
        var rng = new Cwa.Core.SplitMix64(3);
        var scores = new float[n];
        for (int i = 0; i < n; i++) scores[i] = (float)Math.Abs(rng.NextGaussian() * 1e-4);
        var spec = new ParameterSpec("t", [n / 4096, 4096], ParameterRole.UpProj, 0, "mlp.up_proj");
        double stats = BestOf(2, () => Cwa.Core.Sensitivity.TensorStatsCalculator.Compute(spec, scores, n));
        double hist = BestOf(2, () => new Cwa.Core.Sensitivity.LogHistogramBuilder().Add(scores, n, 0));
        double topk = BestOf(2, () => new Cwa.Core.Ranking.TopKCollector(100).Add(0, scores));
        double bottom = BestOf(2, () => new Cwa.Core.Ranking.TopKCollector(100, largest: false).Add(0, scores));
        double concentration = BestOf(2, () => Cwa.Core.Sensitivity.Concentration.Of(spec, 0, scores, n, Environment.ProcessorCount));
        var p999 = Cwa.Core.Sensitivity.TensorStatsCalculator.Compute(spec, scores, n).Stats.P999;
        double concentrationFloor = BestOf(2, () => Cwa.Core.Sensitivity.Concentration.Of(spec, 0, scores, n, Environment.ProcessorCount, p999));
        double topkParallel = BestOf(2, () => Cwa.Core.Ranking.TopKCollector.Best(100, true, 0, scores, n, Environment.ProcessorCount));
        double bottomParallel = BestOf(2, () => Cwa.Core.Ranking.TopKCollector.Best(100, false, 0, scores, n, Environment.ProcessorCount));
        var weights = new float[n];
        for (int i = 0; i < n; i++) weights[i] = (float)(rng.NextGaussian() * 0.02);
        var gradient = new float[n];
        for (int i = 0; i < n; i++) gradient[i] = (float)(rng.NextGaussian() * 1e-3);
        var scorer = new Cwa.Core.Pipeline.TensorScorer(Cwa.Core.Sensitivity.SensitivityMetric.GradXWeight, default, 100, null, Environment.ProcessorCount);
        var input = new Cwa.Core.Sensitivity.TensorScoreInput { Spec = spec, Weights = weights, Gradient = gradient };
        double whole = BestOf(2, () => scorer.Score(0, input));
        double compute = BestOf(2, () => scorer.Compute(input));
        Console.WriteLine();
        Console.WriteLine($"scoring stages on {n / 1e6:F0} M scores, {Environment.ProcessorCount} threads (ns per weight; x 8.03e9 = seconds for Llama-3.1-8B):");
        foreach (var (name, t) in new[] { ("exact stats", stats), ("log histogram", hist), ("top-100", topk), ("bottom-100", bottom), ("top-100, all threads", topkParallel), ("bottom-100, all threads", bottomParallel), ("top-0.1% concentration", concentration), ("the same above p99.9", concentrationFloor), ("grad_x_weight scores", compute), ("whole tensor (TensorScorer)", whole) })
            Console.WriteLine($"  {name,-28} {t * 1e9 / n,6:F2} ns/weight  -> {t / n * 8.03e9,6:F1} s at 8B");
    }

    /// <summary>Best wall-clock seconds of runs calls after one warm-up call.</summary>
    internal static double BestOf(int runs, Action action)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    internal static float[] Random(int n, ulong seed)
    {
        var r = new Cwa.Core.SplitMix64(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() - 0.5);
        return x;
    }

    private static double? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? double.Parse(args[i + 1], CultureInfo.InvariantCulture) : null;
    }

    private static double CpuGhz()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("cpu MHz", StringComparison.Ordinal));
            if (line != null) return double.Parse(line.Split(':')[1], CultureInfo.InvariantCulture) / 1000;
        }
        catch (IOException) { }
        return 2.0;
    }
}

/// <summary>
/// Theoretical FP32 FMA throughput per core: vector lanes x 2 FMA pipes x 2 flops. The two-pipe assumption
/// holds for Zen 4/5 and Intel server cores with AVX-512 (and AVX2 cores generally); state it with any number.
/// </summary>
internal sealed record Peak(double GflopsPerCore, string Description)
{
    public static Peak Of(double ghz)
    {
        int lanes = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? 16 : System.Runtime.Intrinsics.X86.Fma.IsSupported ? 8 : 4;
        return new Peak(ghz * lanes * 2 * 2, $"{(lanes == 16 ? "AVX-512" : lanes == 8 ? "AVX2+FMA" : "SSE")}: {lanes} fp32 lanes x 2 FMA units x 2 flops per cycle");
    }
}
