using System.Text.Json;
using Cwa.Core.Pipeline;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Cuda;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Cuda;

/// <summary>
/// A whole analyze run (gradients, scoring, perturbation with controls and restore) through the device backend
/// on ILGPU's CPU accelerator, against the same run on the CPU backend.
/// </summary>
public sealed class DevicePipelineTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>, IDisposable
{
    // ILGPU's CPU accelerator runs every GEMM element as an emulated GPU thread: keep the held-out set small.
    private readonly TempDir _data = new();

    private AnalyzeRequest Request(string outDir, string device, string dtype)
    {
        string eval = _data.File("eval.txt");
        if (!File.Exists(eval)) File.WriteAllLines(eval, Cwa.Core.Data.BuiltInCorpus.Evaluation.Take(4));
        return new()
        {
            Model = tiny.Model, Device = device, Dtype = dtype, OutDir = outDir, MaxSamples = 8, MaxLength = 32, BatchSize = 4, TopK = 20, EvalFile = eval,
            SavePlots = false, Perturb = "zero", Controls = ["random_k"], ControlSeeds = 2, SaveTokens = true, Threads = 2,
        };
    }

    public void Dispose() => _data.Dispose();

    private static Dictionary<string, HashSet<string>> TopSets(string dir) =>
        TopWeightsCsv.Read(Path.Combine(dir, "top_weights.csv")).GroupBy(r => r.Parameter).ToDictionary(g => g.Key, g => g.Select(r => r.Indices).ToHashSet());

    [Theory]
    [InlineData("f32", 1e-5, 0.95)]
    [InlineData("bf16", 2e-2, 0.7)]
    public void TheDeviceRunAgreesWithTheCpuRun(string dtype, double lossTolerance, double minJaccard)
    {
        using var cpuDir = new TempDir();
        using var devDir = new TempDir();
        var cpu = AnalysisPipeline.Run(Request(cpuDir.Path, "cpu", dtype), new NullProgress());
        var dev = AnalysisPipeline.Run(Request(devDir.Path, "cuda", dtype), new NullProgress(), DeviceBackendFactory.CpuAccelerator(logitsChunk: 1 << 12));
        Assert.Equal(cpu.CalibrationLoss, dev.CalibrationLoss, lossTolerance * cpu.CalibrationLoss);
        Assert.Equal(File.ReadAllText(cpuDir.File(CalibrationTokensFile.Name)), File.ReadAllText(devDir.File(CalibrationTokensFile.Name)));

        var a = TopSets(cpuDir.Path);
        var b = TopSets(devDir.Path);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (tensor, set) in a)
        {
            double j = (double)set.Intersect(b[tensor]).Count() / set.Union(b[tensor]).Count();
            Assert.True(j >= minJaccard, $"{tensor}: top-20 Jaccard {j:F2}");
        }
        using var sc = JsonDocument.Parse(File.ReadAllText(cpuDir.File("sensitivity_stats.json")));
        using var sd = JsonDocument.Parse(File.ReadAllText(devDir.File("sensitivity_stats.json")));
        foreach (var t in sc.RootElement.EnumerateObject())
        {
            double mc = t.Value.GetProperty("mean").GetDouble(), md = sd.RootElement.GetProperty(t.Name).GetProperty("mean").GetDouble();
            Assert.True(Math.Abs(mc - md) <= lossTolerance * 50 * Math.Abs(mc), $"{t.Name}: mean score {mc} (cpu) vs {md} (device)");
            Assert.Equal(t.Value.GetProperty("num_zeros").GetInt64(), sd.RootElement.GetProperty(t.Name).GetProperty("num_zeros").GetInt64());
        }
        using var config = JsonDocument.Parse(File.ReadAllText(devDir.File("config.json")));
        Assert.Equal("ilgpu-cpu", config.RootElement.GetProperty("device").GetString());
        using var pc = JsonDocument.Parse(File.ReadAllText(cpuDir.File("perturbation_results.json")));
        using var pd = JsonDocument.Parse(File.ReadAllText(devDir.File("perturbation_results.json")));
        double Ppl(JsonDocument d, string run) => d.RootElement.GetProperty(run).GetProperty("perplexity").GetDouble();
        Assert.Equal(Ppl(pc, "baseline"), Ppl(pd, "baseline"), lossTolerance * 3 * Ppl(pc, "baseline"));
    }

    [Fact]
    public void TheCliRunsTheDevicePathOnTheCpuAcceleratorWithIlgpuCpu()
    {
        using var dir = new TempDir();
        var (code, stdout, err) = EndToEnd.Cli.Run(["analyze", "--model", tiny.Model, "--device", "ilgpu-cpu", "--out-dir", dir.Path, "--max-samples", "4", "--max-length", "16",
            "--batch-size", "4", "--topk", "5", "--save-plots", "false"]);
        Assert.True(code == 0, err);
        Assert.Contains("device memory plan on CPUAccelerator", stdout + err);
        using var config = JsonDocument.Parse(File.ReadAllText(dir.File("config.json")));
        Assert.Equal("ilgpu-cpu", config.RootElement.GetProperty("device").GetString());
    }

    [Theory]
    [InlineData("bf16", null)]
    [InlineData("bf16", "f32")]
    [InlineData("f32", "f16")]
    public void WeightsGoStraightFromTheCheckpointToTheDeviceHoldingWhatTheCpuHolds(string stored, string? held)
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--dtype", stored, "--seed", "4", "--out", dir.File("m"), "--quiet");
        Assert.True(code == 0, err);
        using var cpu = LoadedModel.Open(dir.File("m"), held, "cpu", new Cwa.Core.Engine.EngineOptions(2), new NullProgress());
        using var dev = LoadedModel.Open(dir.File("m"), held, "cuda", new Cwa.Core.Engine.EngineOptions(2), new NullProgress(), null, DeviceBackendFactory.CpuAccelerator());
        Assert.Equal(cpu.HeldType, dev.HeldType);
        for (int t = 0; t < cpu.Backend.Specs.Count; t++)
        {
            var a = new float[cpu.Backend.Specs[t].NumElements];
            var b = new float[a.Length];
            cpu.Backend.ReadWeight(t, a);
            dev.Backend.ReadWeight(t, b);
            Assert.Equal(a, b);
        }
        // The host copy exists only when asked for, and then holds the same values.
        Assert.Equal(cpu.Weights[0], dev.Weights[0]);
    }

    [Fact]
    public void CalibrationTokensRoundTripAndMatchTheRunsCounts()
    {
        using var dir = new TempDir();
        var s = AnalysisPipeline.Run(Request(dir.Path, "cpu", "f32") with { Perturb = null, Controls = [] }, new NullProgress());
        var rows = CalibrationTokensFile.Read(dir.File(CalibrationTokensFile.Name));
        Assert.Equal(s.NumTexts, rows.Count);
        Assert.Equal(s.NumTokens, rows.Sum(r => r.Tokens.Length - 1));
        Assert.Equal(2, rows.Select(r => r.Batch).Distinct().Count());
    }
}
