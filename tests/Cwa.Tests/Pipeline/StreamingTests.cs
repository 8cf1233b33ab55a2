using System.Text.Json;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Reporting;
using Cwa.Core.Tokenization;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

/// <summary>Generated model folders of every architecture variant the engine supports, shared by the streaming tests.</summary>
public sealed class VariantModelsFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    private readonly TrainedTokenizer _tokenizer = ByteLevelBpeTrainer.Train(BuiltInCorpus.All, 512);

    public string Path(string variant)
    {
        string dir = Dir.File(variant);
        lock (this)
        {
            if (Directory.Exists(dir)) return dir;
            var c = TestModelPresets.Config("tiny", 512) with { BosTokenId = _tokenizer.BosId, EosTokenIds = [_tokenizer.EosId] };
            c = variant switch
            {
                "untied-gqa" => c,
                "tied" => c with { TieWordEmbeddings = true },
                "qwen2-bias" => c with { ModelType = "qwen2", Architecture = "Qwen2ForCausalLM", AttentionBias = true },
                "llama3-rope-mha" => c with { NumKvHeads = c.NumHeads, RopeScaling = new RopeScaling("llama3", 8, 1, 4, 64) },
                _ => throw new ArgumentException(variant),
            };
            TestModelGenerator.Write(dir, c, DType.BF16, 11, _tokenizer.TokenizerJson, _tokenizer.TokenizerConfigJson, minShards: 2);
        }
        return dir;
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>
/// A layer-streamed run gives the in-memory run's results: the same scores and statistics, the same top-k sets,
/// the same perturbation results (bit for bit where the sums are accumulated in the same order).
/// </summary>
public class StreamingTests(VariantModelsFixture models) : IClassFixture<VariantModelsFixture>
{
    private static readonly string[] Common = ["--quiet", "--max-samples", "10", "--max-length", "40", "--batch-size", "3", "--topk", "8", "--save-plots", "false"];

    private static string Run(string model, string outDir, params string[] extra)
    {
        var (code, _, err) = EndToEnd.Cli.Run(["analyze", "--model", model, "--out-dir", outDir, .. Common, .. extra]);
        Assert.True(code == 0, err);
        return outDir;
    }

    private static void AssertSameStats(string a, string b, double tolerance)
    {
        using var x = JsonDocument.Parse(File.ReadAllText(Path.Combine(a, "sensitivity_stats.json")));
        using var y = JsonDocument.Parse(File.ReadAllText(Path.Combine(b, "sensitivity_stats.json")));
        Assert.Equal(x.RootElement.EnumerateObject().Select(p => p.Name), y.RootElement.EnumerateObject().Select(p => p.Name));
        foreach (var t in x.RootElement.EnumerateObject())
            foreach (var stat in t.Value.EnumerateObject())
            {
                double u = stat.Value.GetDouble(), v = y.RootElement.GetProperty(t.Name).GetProperty(stat.Name).GetDouble();
                Assert.True(Math.Abs(u - v) <= tolerance * Math.Max(Math.Abs(u), 1e-30), $"{t.Name}.{stat.Name}: {u} vs {v}");
            }
    }

    private static void AssertSameTopSets(string a, string b)
    {
        var x = TopWeightsCsv.Read(Path.Combine(a, "top_weights.csv")).Select(r => (r.Parameter, r.Row, r.Col)).ToHashSet();
        var y = TopWeightsCsv.Read(Path.Combine(b, "top_weights.csv")).Select(r => (r.Parameter, r.Row, r.Col)).ToHashSet();
        Assert.Equal(x.Count, y.Count);
        Assert.True(x.SetEquals(y), "top-k sets differ");
    }

    [Theory]
    [InlineData("untied-gqa", "grad_x_weight", "per_layer")]
    [InlineData("untied-gqa", "fisher", "global")]
    [InlineData("untied-gqa", "obd", "per_block")]
    [InlineData("untied-gqa", "wanda", "per_layer")]
    [InlineData("untied-gqa", "act_outlier", "global")]
    [InlineData("untied-gqa", "magnitude", "per_layer")]
    [InlineData("qwen2-bias", "grad_squared", "per_layer")]
    [InlineData("qwen2-bias", "fisher", "per_layer")]
    [InlineData("llama3-rope-mha", "grad_x_weight", "global")]
    [InlineData("llama3-rope-mha", "fisher", "per_layer")]
    public void StreamedEqualsInMemoryBitForBit(string variant, string metric, string mode)
    {
        using var dir = new TempDir();
        string model = models.Path(variant);
        string[] args = ["--metric", metric, "--mode", mode, "--include-1d", metric is "wanda" or "act_outlier" ? "false" : "true", "--dump-scores"];
        var a = Run(model, dir.File("memory"), [.. args, "--streaming", "off"]);
        var b = Run(model, dir.File("streamed"), [.. args, "--streaming", "on"]);
        foreach (var f in new[] { "top_weights.csv", "sensitivity_stats.json", "sensitivity_aggregates.json", "scores.safetensors" })
            Assert.True(File.ReadAllBytes(Path.Combine(a, f)).SequenceEqual(File.ReadAllBytes(Path.Combine(b, f))), $"{f} differs");
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(b, "experiment_manifest.json")));
        var results = m.RootElement.GetProperty("results");
        if (metric is "wanda" or "act_outlier" or "magnitude") Assert.False(results.TryGetProperty("layer_major_backward", out _));
        else Assert.StartsWith("kept in memory", results.GetProperty("layer_major_backward").GetString());
        if (metric == "act_outlier")
            Assert.Equal(File.ReadAllText(Path.Combine(a, "super_weights.json")), File.ReadAllText(Path.Combine(b, "super_weights.json")));
    }

    [Fact]
    public void TiedEmbeddingsAgreeWithinFloatRounding()
    {
        // The tied tensor's two gradient parts are summed in another order (all lm_head parts first): not bit-identical.
        using var dir = new TempDir();
        string model = models.Path("tied");
        var a = Run(model, dir.File("memory"), "--streaming", "off");
        var b = Run(model, dir.File("streamed"), "--streaming", "on");
        AssertSameStats(a, b, 1e-6);
        AssertSameTopSets(a, b);
    }

    [Fact]
    public void PerturbationControlsAndKSweepAreTheSameStreamed()
    {
        using var dir = new TempDir();
        string model = models.Path("untied-gqa");
        string[] args = ["--perturb", "gauss_noise", "--perturb-scale", "0.5", "--controls", "random_k,bottom_k", "--control-seeds", "2", "--k-sweep", "1,8"];
        var a = Run(model, dir.File("memory"), [.. args, "--streaming", "off"]);
        var b = Run(model, dir.File("streamed"), [.. args, "--streaming", "on"]);
        Assert.Equal(File.ReadAllText(Path.Combine(a, "perturbation_results.json")), File.ReadAllText(Path.Combine(b, "perturbation_results.json")));
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(b, "experiment_manifest.json")));
        Assert.Equal("on", m.RootElement.GetProperty("config").GetProperty("streaming").GetString());
    }

    [Fact]
    public void EvalStreamedEqualsInMemory()
    {
        string model = models.Path("qwen2-bias");
        var a = EndToEnd.Cli.Run("eval", "--model", model, "--streaming", "off", "--max-length", "40", "--quiet");
        var b = EndToEnd.Cli.Run("eval", "--model", model, "--streaming", "on", "--max-length", "40", "--quiet");
        Assert.True(a.Code == 0, a.Err);
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("perplexity", a.Out);
        Assert.Equal(a.Out, b.Out);
    }

    [Fact]
    public void InspectPrintsTheInMemoryStreamedAndGpuPlansOfTheDemoWithoutAModel()
    {
        var (code, stdout, err) = EndToEnd.Cli.Run("inspect");
        Assert.True(code == 0, err);
        foreach (var line in new[] { "analyze (CPU, batch 8 x 256 tokens)", "analyze (CPU, layer streaming)", "analyze (CPU, layer streaming, fisher/obd)", "analyze (GPU)", "per 1,000 calibration tokens" })
            Assert.Contains(line, stdout);
    }

    [Fact]
    public void ATightBudgetStreamsAutomaticallyAndSpillsHiddenStatesToAScratchFileItRemoves()
    {
        using var dir = new TempDir();
        string model = models.Path("untied-gqa");
        using var ckpt = CheckpointFolder.Open(model);
        var c = ckpt.Config;
        // Below the in-memory plan, above one streamed block, with less room than the hidden states take.
        long resident = MemoryEstimate.ForStreaming(c, 3, 40, true, false, 0, hiddenInMemory: false).Total;
        long budget = resident + 4096;
        Assert.True(MemoryEstimate.ForAnalysis(c, 3, 40).Total > budget, "the budget must force streaming");
        var a = Run(model, dir.File("memory"), "--streaming", "off");
        string streamed = dir.File("streamed");
        var (code, stdout, err) = EndToEnd.Cli.Run(["analyze", "--model", model, "--out-dir", streamed, "--max-samples", "10", "--max-length", "40", "--batch-size", "3",
            "--topk", "8", "--save-plots", "false", "--memory-budget", budget.ToString()]);
        Assert.True(code == 0, err);
        Assert.Contains("layer streaming", stdout);
        Assert.Contains("in a scratch file", stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "top_weights.csv")), File.ReadAllBytes(Path.Combine(streamed, "top_weights.csv")));
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(streamed, "experiment_manifest.json")));
        var results = m.RootElement.GetProperty("results");
        Assert.StartsWith("kept in a scratch file", results.GetProperty("layer_major_backward").GetString());
        var stages = results.GetProperty("layer_major_seconds");
        foreach (var stage in new[] { "load_weights", "forward_blocks", "head", "backward_blocks", "embedding", "kept_writes", "kept_reads" })
            Assert.True(stages.GetProperty(stage).GetDouble() >= 0, stage);
        // Kept writes and reads happen inside the block sweeps: they are parts of them, not extra time.
        Assert.True(stages.GetProperty("kept_writes").GetDouble() <= stages.GetProperty("forward_blocks").GetDouble() + 1e-3);
        Assert.True(stages.GetProperty("kept_reads").GetDouble() <= stages.GetProperty("backward_blocks").GetDouble() + 1e-3);
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "*.scratch", SearchOption.AllDirectories));
    }

    /// <summary>
    /// The backward from kept product outputs (in memory, or in a scratch file) gives the recomputing backward's
    /// sums bit for bit, with and without per-batch (Fisher) sums, on biases and GQA.
    /// </summary>
    [Theory]
    [InlineData("qwen2-bias", false)]
    [InlineData("qwen2-bias", true)]
    [InlineData("llama3-rope-mha", true)]
    public void KeptActivationsGiveTheRecomputedSumsBitForBit(string variant, bool perBatch)
    {
        using var dir = new TempDir();
        using var ckpt = CheckpointFolder.Open(models.Path(variant));
        var rng = new Cwa.Core.SplitMix64(9);
        var batches = Enumerable.Range(0, 3).Select(_ =>
        {
            int[] lengths = [40, 17, 29];
            return new Batch(3, 40, Enumerable.Range(0, 120).Select(_ => (int)rng.NextLong(ckpt.Config.VocabSize)).ToArray(), lengths);
        }).ToList();
        var mode = perBatch ? Cwa.Core.Engine.Accumulation.PerBatch : Cwa.Core.Engine.Accumulation.Sum;
        Dictionary<int, (float[] G, float[]? F)> Sums(bool keep, long budget, string expected)
        {
            using var backend = Cwa.Core.Engine.StreamedBackend.OnCpu(ckpt, DType.F32, null, budget, dir.Path);
            backend.Pass.KeepActivations = keep;
            var sums = new Dictionary<int, (float[], float[]?)>();
            backend.Pass.Gradients(batches, mode, 0.5, false, c => sums[c.Index] = (c.Gradient!.ToArray(), c.Fisher?.ToArray()), null);
            Assert.StartsWith(expected, backend.Pass.BackwardActivations);
            return sums;
        }
        var recomputed = Sums(false, 1L << 30, "recomputed");
        foreach (var (budget, expected) in new[] { (1L << 30, "kept in memory"), (0L, "kept in a scratch file") })
        {
            var kept = Sums(true, budget, expected);
            Assert.Equal(recomputed.Keys.Order(), kept.Keys.Order());
            foreach (var (t, (g, f)) in recomputed)
            {
                Assert.True(g.AsSpan().SequenceEqual(kept[t].G), $"{expected}: gradient of tensor {t} differs");
                Assert.Equal(f == null, kept[t].F == null);
                if (f != null) Assert.True(f.AsSpan().SequenceEqual(kept[t].F), $"{expected}: Fisher sums of tensor {t} differ");
            }
        }
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "*.scratch"));
    }

    [Fact]
    public void PerBatchSumsNeedABatchBufferOnlyForBatchesDeeperThanOneSgemmStep()
    {
        using var dir = new TempDir();
        using var ckpt = CheckpointFolder.Open(models.Path("untied-gqa"));
        var rng = new Cwa.Core.SplitMix64(5);
        Batch Make(int size, int length) =>
            new(size, length, Enumerable.Range(0, size * length).Select(_ => (int)rng.NextLong(ckpt.Config.VocabSize)).ToArray(), Enumerable.Repeat(length, size).ToArray());
        var (shallow, deep) = (Make(2, 30), Make(3, 400));
        Assert.True(deep.BatchSize * deep.SeqLen > Cwa.Core.Engine.Sgemm.KCSingle);
        Dictionary<int, (float[] G, float[]? F)> Sums(Batch[] batches, Cwa.Core.Engine.Accumulation mode, double scale, out long bufferBytes)
        {
            using var backend = Cwa.Core.Engine.StreamedBackend.OnCpu(ckpt, DType.F32, null, 1L << 30, dir.Path);
            var sums = new Dictionary<int, (float[], float[]?)>();
            backend.Pass.Gradients(batches, mode, scale, false, c => sums[c.Index] = (c.Gradient!.ToArray(), c.Fisher?.ToArray()), null);
            bufferBytes = ((Cwa.Core.Engine.CpuBlockEngine)backend.Engine).PeakBatchBufferBytes;
            return sums;
        }
        // A block's norms (and biases) always accumulate in a batch buffer; its weight matrices only for the deep batch.
        var block = Cwa.Core.Models.LlamaLayout.Parameters(ckpt.Config).Where(p => p.Block == 0).ToList();
        long vectors = block.Where(p => !p.Is2D).Sum(p => p.NumElements) * 4, matrices = block.Where(p => p.Is2D).Sum(p => p.NumElements) * 4;
        Sums([shallow, shallow], Cwa.Core.Engine.Accumulation.PerBatch, 0.5, out long bytes);
        Assert.Equal(vectors + (Cwa.Core.Engine.Sgemm.Vectorised ? 0 : matrices), bytes); // the reference loop writes C

        var both = Sums([shallow, deep], Cwa.Core.Engine.Accumulation.PerBatch, 0.5, out bytes);
        Assert.Equal(vectors + matrices, bytes);
        var first = Sums([shallow], Cwa.Core.Engine.Accumulation.Sum, 1.0, out _);
        var second = Sums([deep], Cwa.Core.Engine.Accumulation.Sum, 1.0, out _);
        foreach (var (t, (g, f)) in both)
        {
            var (a, b) = (first[t].G, second[t].G);
            double big = a.Concat(b).Max(v => Math.Abs((double)v)) + 1e-30;
            for (int i = 0; i < g.Length; i++)
            {
                Assert.True(Math.Abs(g[i] - 0.5 * (a[i] + b[i])) <= 1e-5 * big, $"tensor {t}: total[{i}] {g[i]}, batches {a[i]} and {b[i]}");
                Assert.True(Math.Abs(f![i] - ((double)a[i] * a[i] + (double)b[i] * b[i])) <= 1e-5 * big * big, $"tensor {t}: squares[{i}] {f[i]}, batches {a[i]} and {b[i]}");
            }
        }
    }

    [Theory]
    [InlineData("tied", new[] { "--metric", "fisher" }, "tied embeddings need the in-memory mode")]
    [InlineData("untied-gqa", new[] { "--metric", "hutchinson_diag" }, "not available with layer streaming")]
    [InlineData("untied-gqa", new[] { "--checkpoint-every", "2" }, "--checkpoint-every and --resume are not available with layer streaming")]
    [InlineData("untied-gqa", new[] { "--streaming", "sometimes" }, "--streaming: unknown value 'sometimes'")]
    [InlineData("untied-gqa", new[] { "--memory-budget", "lots" }, "--memory-budget: 'lots' is not a size")]
    [InlineData("untied-gqa", new[] { "--memory-budget", "1K" }, "lower --batch-size or --max-length, or raise --memory-budget")]
    public void WhatStreamingCannotDoIsRefusedUpFront(string variant, string[] extra, string expected)
    {
        using var dir = new TempDir();
        string[] streaming = extra.Contains("--streaming") ? [] : ["--streaming", "on"];
        var (code, _, err) = EndToEnd.Cli.Run(["analyze", "--model", models.Path(variant), "--out-dir", dir.File("o"), .. Common, .. streaming, .. extra]);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, err);
        Assert.False(Directory.Exists(dir.File("o")));
    }
}
