using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;

namespace Cwa.Bench;

/// <summary>
/// `dotnet run --project bench/Cwa.Bench -c Release -- scale8b [--model DIR] [--out DIR] [--samples 16] [--length 128]
/// [--metrics grad_x_weight,fisher]`: the reference job at its real size on this machine. Generates the
/// llama-3.1-8b-shape preset in bf16 (16 GB; refused when the disk lacks room) unless DIR already holds it, then runs
/// analyze (per_layer, top-100, all threads, layer streaming as auto chooses) once per metric in this process, and
/// prints each phase's seconds, peak anonymous and resident memory, forward+backward GFLOP/s against the measured
/// FP32 peak, and scoring ns per weight. Results also go to OUT/scale8b.json.
/// </summary>
internal static class ScaleBenchmark
{
    public static void Run(string[] args, Peak peak, double ghz)
    {
        string model = Text(args, "--model") ?? Path.Combine(Path.GetTempPath(), "cwa-bench", "llama-3.1-8b-shape");
        string outRoot = Text(args, "--out") ?? Path.Combine(Path.GetTempPath(), "cwa-bench", "runs");
        int samples = int.Parse(Text(args, "--samples") ?? "16", CultureInfo.InvariantCulture);
        int length = int.Parse(Text(args, "--length") ?? "128", CultureInfo.InvariantCulture);
        var metrics = (Text(args, "--metrics") ?? "grad_x_weight,fisher").Split(',');
        if (!File.Exists(Path.Combine(model, "config.json")))
        {
            Console.WriteLine($"generating llama-3.1-8b-shape (bf16) into {model} ...");
            var sw = Stopwatch.StartNew();
            TestModelGenerator.WritePreset(model, "llama-3.1-8b-shape", DType.BF16, 1);
            Console.WriteLine($"  done in {sw.Elapsed.TotalSeconds:F0} s");
        }
        using (var ckpt = CheckpointFolder.Open(model))
            Console.WriteLine($"model: {model}: {ckpt.TotalParameters:N0} parameters, {ckpt.StoredType("model.embed_tokens.weight")}, {ckpt.ShardPaths.Count} shards");
        double peakTotal = peak.GflopsPerCore * Environment.ProcessorCount;
        var report = new JsonObject { ["machine"] = $"{Environment.ProcessorCount} threads, measured {ghz:F2} GHz", ["peak_gflops"] = peakTotal, ["runs"] = new JsonArray() };
        foreach (var metric in metrics)
        {
            string outDir = Path.Combine(outRoot, metric);
            var request = new AnalyzeRequest
            {
                Model = model, Metric = metric, Mode = "per_layer", TopK = 100, MaxSamples = samples, MaxLength = length,
                Threads = Environment.ProcessorCount, OutDir = outDir, SavePlots = false, Device = "cpu",
            };
            Console.WriteLine();
            Console.WriteLine($"analyze --metric {metric} --mode per_layer --topk 100 --max-samples {samples} --max-length {length} --threads {Environment.ProcessorCount}");
            var wall = Stopwatch.StartNew();
            AnalysisPipeline.Run(request, new LineProgress());
            double seconds = wall.Elapsed.TotalSeconds;
            using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "experiment_manifest.json")));
            var m = manifest.RootElement;
            var results = m.GetProperty("results");
            double fbSeconds = results.GetProperty("forward_backward_seconds").GetDouble();
            double gflops = results.GetProperty("forward_backward_tflops").GetDouble() * 1000;
            using var stats = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "sensitivity_stats.json")));
            long scored = stats.RootElement.EnumerateObject().Sum(t => t.Value.GetProperty("num_weights").GetInt64());
            double scoring = m.GetProperty("timing").GetProperty("scoring").GetDouble();
            var phases = m.GetProperty("timing").EnumerateObject().Select(p => $"{p.Name} {p.Value.GetDouble():F1} s");
            Console.WriteLine($"  wall {seconds:F0} s; phases: {string.Join(", ", phases)}");
            Console.WriteLine($"  tokens {m.GetProperty("data").GetProperty("num_tokens").GetInt64()} targets in {m.GetProperty("data").GetProperty("num_sequences").GetInt32()} sequences; " +
                $"layer streaming {results.GetProperty("layer_streaming").GetBoolean()}");
            Console.WriteLine($"  peak memory: anonymous {results.GetProperty("peak_rss_anon_bytes").GetInt64() / (double)(1L << 30):F2} GiB " +
                $"(estimate {results.GetProperty("memory_estimate_bytes").GetInt64() / (double)(1L << 30):F2} GiB), " +
                $"resident incl. mapped weights {results.GetProperty("peak_rss_bytes").GetInt64() / (double)(1L << 30):F2} GiB");
            Console.WriteLine($"  forward+backward: {fbSeconds:F0} s, {gflops:F1} GFLOP/s = {100 * gflops / peakTotal:F1}% of the {peakTotal:F0} GFLOP/s peak " +
                "(useful FLOPs: the recomputed forward of the backward sweep is not counted)");
            Console.WriteLine($"  scoring: {scoring:F1} s = {scoring * 1e9 / scored:F1} ns per weight");
            JsonNode? stages = results.TryGetProperty("layer_major_seconds", out var st) ? JsonNode.Parse(st.GetRawText()) : null;
            if (stages != null)
                Console.WriteLine($"  layer-major stages: {string.Join(", ", stages.AsObject().Select(s => $"{s.Key} {s.Value!.GetValue<double>():F1} s"))}");
            ((JsonArray)report["runs"]!).Add(new JsonObject
            {
                ["metric"] = metric, ["wall_seconds"] = seconds, ["timing"] = JsonNode.Parse(m.GetProperty("timing").GetRawText()),
                ["peak_rss_anon_bytes"] = results.GetProperty("peak_rss_anon_bytes").GetInt64(), ["peak_rss_bytes"] = results.GetProperty("peak_rss_bytes").GetInt64(),
                ["memory_estimate_bytes"] = results.GetProperty("memory_estimate_bytes").GetInt64(),
                ["forward_backward_seconds"] = fbSeconds, ["forward_backward_gflops"] = gflops, ["percent_of_peak"] = 100 * gflops / peakTotal,
                ["scoring_ns_per_weight"] = scoring * 1e9 / scored, ["layer_major_seconds"] = stages,
            });
        }
        Directory.CreateDirectory(outRoot);
        File.WriteAllText(Path.Combine(outRoot, "scale8b.json"), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static string? Text(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>One line per message and per finished phase, with its duration.</summary>
    private sealed class LineProgress : IProgressSink
    {
        public IPhaseProgress Start(string phase, double total) => new Phase(phase);
        public void Info(string message) => Console.WriteLine($"  {message}");

        private sealed class Phase(string name) : IPhaseProgress
        {
            private readonly Stopwatch _sw = Stopwatch.StartNew();
            public void Advance(double steps = 1) { }
            public void Describe(string text) { }
            public void Dispose() => Console.WriteLine($"  {name}: {_sw.Elapsed.TotalSeconds:F1} s");
        }
    }
}
