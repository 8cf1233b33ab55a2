using System.Text.Json;
using Cwa.Core.Models;
using Cwa.Core.Reporting;
using Cwa.Cuda;
using Cwa.Cuda.Engine;
using Cwa.Tests.Pipeline;

namespace Cwa.Tests.Cuda;

/// <summary>
/// Layer streaming on a device (one block's weights and sums on the device at a time), run on ILGPU's CPU
/// accelerator: it must give the in-memory device run's results, and agree with the CPU's streamed run.
/// </summary>
public sealed class DeviceStreamingTests(VariantModelsFixture models) : IClassFixture<VariantModelsFixture>
{
    private static readonly string[] Common = ["--quiet", "--max-samples", "6", "--max-length", "24", "--batch-size", "3", "--topk", "8", "--save-plots", "false"];

    private static string Run(string model, string outDir, params string[] extra)
    {
        var (code, _, err) = EndToEnd.Cli.Run(["analyze", "--model", model, "--out-dir", outDir, .. Common, .. extra]);
        Assert.True(code == 0, err);
        return outDir;
    }

    /// <param name="skip">statistics not compared (min: values near 1e-12 whose relative difference means nothing)</param>
    private static double WorstStatDifference(string a, string b, params string[] skip)
    {
        using var x = JsonDocument.Parse(File.ReadAllText(Path.Combine(a, "sensitivity_stats.json")));
        using var y = JsonDocument.Parse(File.ReadAllText(Path.Combine(b, "sensitivity_stats.json")));
        Assert.Equal(x.RootElement.EnumerateObject().Select(p => p.Name), y.RootElement.EnumerateObject().Select(p => p.Name));
        double worst = 0;
        foreach (var t in x.RootElement.EnumerateObject())
            foreach (var stat in t.Value.EnumerateObject().Where(s => !skip.Contains(s.Name)))
            {
                double u = stat.Value.GetDouble(), v = y.RootElement.GetProperty(t.Name).GetProperty(stat.Name).GetDouble();
                if (u != v) worst = Math.Max(worst, Math.Abs(u - v) / Math.Max(Math.Abs(u), 1e-30));
            }
        return worst;
    }

    private static HashSet<(string, int, int)> TopSet(string dir) =>
        TopWeightsCsv.Read(Path.Combine(dir, "top_weights.csv")).Select(r => (r.Parameter, r.Row, r.Col)).ToHashSet();

    [Theory]
    [InlineData("untied-gqa", "grad_x_weight", "per_layer")]
    [InlineData("untied-gqa", "fisher", "global")]
    [InlineData("qwen2-bias", "obd", "per_layer")]
    [InlineData("llama3-rope-mha", "act_outlier", "global")]
    [InlineData("tied", "grad_squared", "per_layer")]
    public void StreamedOnTheDeviceEqualsTheDeviceInMemory(string variant, string metric, string mode)
    {
        using var dir = new TempDir();
        string model = models.Path(variant);
        string[] args = ["--device", "ilgpu-cpu", "--metric", metric, "--mode", mode, "--include-1d", metric == "act_outlier" ? "false" : "true"];
        var a = Run(model, dir.File("memory"), [.. args, "--streaming", "off"]);
        var b = Run(model, dir.File("streamed"), [.. args, "--streaming", "on"]);
        // Same kernels in the same order; only the embedding's gradient is summed on the host when streamed (another order).
        double worst = WorstStatDifference(a, b);
        Assert.True(worst <= 1e-6, $"statistics differ by {worst:E2} (relative)");
        Assert.True(TopSet(a).SetEquals(TopSet(b)), "top-k sets differ");
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(b, "experiment_manifest.json")));
        Assert.True(m.RootElement.GetProperty("results").GetProperty("layer_streaming").GetBoolean());
        if (metric == "act_outlier")
            Assert.Equal(File.ReadAllText(Path.Combine(a, "super_weights.json")), File.ReadAllText(Path.Combine(b, "super_weights.json")));
    }

    [Fact]
    public void StreamedOnTheDeviceAgreesWithTheCpuStreamedRunInFp32()
    {
        // fp32 held weights: every device product is fp32, so the two engines differ only in summation order.
        using var dir = new TempDir();
        string model = models.Path("untied-gqa");
        string[] args = ["--dtype", "f32", "--metric", "grad_x_weight", "--streaming", "on", "--include-1d", "true"];
        var cpu = Run(model, dir.File("cpu"), [.. args, "--device", "cpu"]);
        var dev = Run(model, dir.File("device"), [.. args, "--device", "ilgpu-cpu"]);
        double worst = WorstStatDifference(cpu, dev, "min");
        Assert.True(worst <= 1e-3, $"statistics differ by {worst:E2} (relative)");
        var (x, y) = (TopSet(cpu), TopSet(dev));
        double jaccard = (double)x.Intersect(y).Count() / x.Union(y).Count();
        Assert.True(jaccard >= 0.95, $"top-k Jaccard {jaccard:F3}");
    }

    [Fact]
    public void PerturbationAndControlsAreTheSameStreamedOnTheDevice()
    {
        // Perturbed weights live in the host overlay; the device must upload them again for every perturbed set.
        using var dir = new TempDir();
        string eval = dir.File("eval.txt");
        File.WriteAllLines(eval, Cwa.Core.Data.BuiltInCorpus.Evaluation.Take(4));
        string model = models.Path("untied-gqa");
        string[] args = ["--device", "ilgpu-cpu", "--perturb", "zero", "--controls", "random_k,bottom_k", "--control-seeds", "2", "--eval-file", eval];
        var a = Run(model, dir.File("memory"), [.. args, "--streaming", "off"]);
        var b = Run(model, dir.File("streamed"), [.. args, "--streaming", "on"]);
        var x = Perplexities(a);
        var y = Perplexities(b);
        Assert.Equal(5, x.Count); // baseline, top_k, two random_k draws, bottom_k
        Assert.Equal(x.Keys.Order(), y.Keys.Order());
        foreach (var (run, u) in x)
            Assert.True(Math.Abs(u - y[run]) <= 1e-6 * u, $"{run}: perplexity {u} in memory, {y[run]} streamed");
        Assert.True(Math.Abs(y["top_k"] - y["baseline"]) > 1e-3 * y["baseline"], "zeroing the top-k must change the perplexity");
    }

    private static Dictionary<string, double> Perplexities(string dir)
    {
        using var d = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "perturbation_results.json")));
        var r = d.RootElement;
        var all = new Dictionary<string, double>
        {
            ["baseline"] = r.GetProperty("baseline").GetProperty("perplexity").GetDouble(),
            ["top_k"] = r.GetProperty("top_k_run").GetProperty("perplexity").GetDouble(),
        };
        foreach (var c in r.GetProperty("controls").EnumerateArray())
            foreach (var run in c.GetProperty("runs").EnumerateArray())
                all[$"{run.GetProperty("selection").GetString()}/{run.GetProperty("seed").GetInt32()}"] = run.GetProperty("perplexity").GetDouble();
        return all;
    }

    [Fact]
    public void TheCliSaysItStreamsOnTheDeviceAndAutoStreamsWhenTheModelDoesNotFit()
    {
        using var dir = new TempDir();
        var (code, stdout, err) = EndToEnd.Cli.Run(["analyze", "--model", models.Path("untied-gqa"), "--out-dir", dir.File("o"), "--device", "ilgpu-cpu", "--streaming", "on",
            "--max-samples", "3", "--max-length", "16", "--batch-size", "3", "--topk", "4", "--save-plots", "false"]);
        Assert.True(code == 0, err);
        Assert.Contains("device memory plan (layer streaming) on CPUAccelerator", stdout);
        Assert.Contains("layer streaming (one block on the device at a time)", stdout);
    }

    [Fact]
    public void TheSeventyBShapePlanFitsAnEightyGigabyteGpuOnlyWhenStreamed()
    {
        var c = TestModelPresets.Config("llama-3.1-70b-shape", TestModelPresets.Vocabulary("llama-3.1-70b-shape"));
        Assert.InRange(LlamaLayout.ParameterCount(c), 70_000_000_000L, 71_000_000_000L);
        long gpu = 80L << 30;
        var shape = new WorkspaceShape(4, 512, true, false, CudaBackend.DefaultLogitsChunk);
        Assert.False(DeviceMemoryPlan.For("GPU", c, StorageFormat.Bf16, shape with { Recompute = true }, gpu).Fits);
        foreach (bool perBatch in new[] { false, true })
        {
            var plan = DeviceMemoryPlan.ForStreaming("GPU", c, StorageFormat.Bf16, shape, perBatch, gpu);
            Assert.True(plan.Fits, plan.Describe());
            // One block's bf16 matrices or lm_head's, never the model's 140 GB.
            Assert.InRange(plan.Weights, 1L << 30, 8L << 30);
        }
    }

    [Fact]
    public void InspectPrintsTheStreamedGpuPlansOfAPresetAndWhetherTheyFit()
    {
        var (code, stdout, err) = EndToEnd.Cli.Run("inspect", "--preset", "llama-3.1-70b-shape", "--device-memory", "80G", "--batch-size", "1", "--max-length", "128");
        Assert.True(code == 0, err);
        Assert.Contains("parameters:   70,553,706,496", stdout);
        Assert.Matches(@"analyze \(GPU\): .*does not fit 80\.00 GiB", stdout);
        Assert.Matches(@"analyze \(GPU, layer streaming\): .* \(fits 80\.00 GiB", stdout);
        Assert.Matches(@"analyze \(GPU, layer streaming, fisher/obd\): .* \(fits 80\.00 GiB", stdout);
        var bad = EndToEnd.Cli.Run("inspect", "--preset", "llama-9000");
        Assert.Equal(2, bad.Code);
        Assert.Contains("unknown preset 'llama-9000'", bad.Err);
    }
}
