using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Sensitivity;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

public class ResumeTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    /// <summary>Simulates a run killed part-way: the forward/backward of one batch never returns.</summary>
    private LoadedModel Model(int crashAt = -1) =>
        FaultInjectingBackend.Open(tiny.Model, (call, loss) => call == crashAt ? throw new OperationCanceledException("killed") : loss);

    private IReadOnlyList<Batch> Batches(LoadedModel m) =>
        CalibrationSet.MakeBatches(CalibrationSet.Build(BuiltInCorpus.Calibration, m.Tokenizer, 24, 12, 5), 2, m.Tokenizer.PadId);

    [Theory]
    [InlineData(SensitivityMetric.GradXWeight, false)]
    [InlineData(SensitivityMetric.Fisher, false)]
    [InlineData(SensitivityMetric.GradXWeight, true)]
    public void ResumedRunEqualsAnUninterruptedOneWithoutACheckpointBitForBit(SensitivityMetric metric, bool skipNonFinite)
    {
        using var dir = new TempDir();
        using var healthy = Model();
        var batches = Batches(healthy);
        var r = new AnalyzeRequest { Resume = true, SkipNonFinite = skipNonFinite };
        string path = dir.File("ckpt.safetensors");

        // The reference never checkpoints: saving and resuming must not change a single bit.
        var reference = GradientPass.Run(healthy, batches, metric, ObdCurvature.Fisher, r with { Resume = false }, NullProgress.Instance);

        using (var crashing = Model(crashAt: 3))
            Assert.Throws<OperationCanceledException>(() =>
                GradientPass.Run(crashing, batches, metric, ObdCurvature.Fisher, r, NullProgress.Instance, new GradientCheckpoint(path, "key", 2)));
        Assert.True(File.Exists(path), "a checkpoint must exist after the interruption");

        using var again = Model();
        var resumed = GradientPass.Run(again, batches, metric, ObdCurvature.Fisher, r, NullProgress.Instance, new GradientCheckpoint(path, "key", 2));
        Assert.False(File.Exists(path), "the checkpoint is removed once the pass completes");
        Assert.Equal(reference.CalibrationLoss, resumed.CalibrationLoss);
        Assert.Equal(reference.CalibrationTokens, resumed.CalibrationTokens);
        for (int t = 0; t < reference.Gradient!.Length; t++)
        {
            Assert.Equal(reference.Gradient[t], resumed.Gradient![t]);
            if (metric == SensitivityMetric.Fisher) Assert.Equal(reference.Fisher!.Get(t), resumed.Fisher!.Get(t));
        }
    }

    [Fact]
    public void CheckpointingEveryBatchGivesTheSameSumsAsNone()
    {
        using var dir = new TempDir();
        using var m = Model();
        var batches = Batches(m);
        var plain = GradientPass.Run(m, batches, SensitivityMetric.GradXWeight, ObdCurvature.Fisher, new AnalyzeRequest(), NullProgress.Instance);
        var saved = GradientPass.Run(m, batches, SensitivityMetric.GradXWeight, ObdCurvature.Fisher, new AnalyzeRequest { CheckpointEvery = 1 }, NullProgress.Instance,
            new GradientCheckpoint(dir.File("c.safetensors"), "k", 1));
        for (int t = 0; t < plain.Gradient!.Length; t++) Assert.Equal(plain.Gradient[t], saved.Gradient![t]);
    }

    private static readonly IReadOnlyList<ParameterSpec> Specs = [new("a", [2, 3], ParameterRole.QProj, 0, "q"), new("b", [4], ParameterRole.InputNorm, 0, "n")];

    private static void SaveSample(string path, string key = "run-a", bool fisher = false) =>
        new GradientCheckpoint(path, key, 2).Save(new CheckpointPosition(2, 1.5, 10, ["batch 0: loss NaN"]), Specs,
            (t, into) => { for (int i = 0; i < into.Length; i++) into[i] = t * 10 + i; }, fisher ? (t, into) => into.Fill(t + 0.5f) : null);

    private static CheckpointPosition? LoadSample(string path, string key = "run-a", bool fisher = false, Dictionary<int, float[]>? got = null) =>
        new GradientCheckpoint(path, key, 2).Load(Specs, 5, (t, v) => { if (got != null) got[t] = v.ToArray(); }, fisher ? (_, _) => { } : null);

    [Fact]
    public void CheckpointRoundTripsAndAnotherRunsIsRefused()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        SaveSample(path);
        var got = new Dictionary<int, float[]>();
        var pos = LoadSample(path, got: got)!;
        Assert.Equal((2, 1.5, 10L), (pos.NextBatch, pos.LossSum, pos.Tokens));
        Assert.Equal(["batch 0: loss NaN"], pos.Skipped);
        Assert.Equal([0f, 1, 2, 3, 4, 5], got[0]);
        Assert.Equal([10f, 11, 12, 13], got[1]);
        var e = Assert.Throws<InputException>(() => LoadSample(path, key: "run-b"));
        Assert.Contains("belongs to a different run", e.Message);
        Assert.Null(LoadSample(dir.File("none.safetensors")));
    }

    [Fact]
    public void AFlippedDataByteIsRefusedByTheChecksum()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        SaveSample(path);
        var bytes = File.ReadAllBytes(path);
        bytes[^3] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        bool delivered = false;
        var e = Assert.Throws<InputException>(() => new GradientCheckpoint(path, "run-a", 2).Load(Specs, 5, (_, _) => delivered = true, null));
        Assert.StartsWith(path + ": the gradient checkpoint is damaged (checksum mismatch", e.Message);
        Assert.False(delivered, "nothing of a damaged checkpoint may reach the sums");
    }

    /// <summary>Rewrites a saved checkpoint with edited metadata or without some tensors (a hand-damaged file).</summary>
    private static void Rewrite(string path, Action<Dictionary<string, string>> editMeta, Func<string, bool>? keep = null)
    {
        Dictionary<string, string> meta;
        List<(string Name, float[] Values)> tensors;
        using (var f = SafeTensorsFile.Open(path))
        {
            meta = f.Metadata.ToDictionary();
            tensors = f.Names.Where(n => keep?.Invoke(n) ?? true).Select(n => { var v = new float[f.Info(n).ElementCount]; f.Read(n, v); return (n, v); }).ToList();
        }
        editMeta(meta);
        using var w = new SafeTensorsWriter(path, tensors.Select(t => (t.Name, DType.F32, new long[] { t.Values.Length })).ToList(), meta);
        foreach (var (n, v) in tensors) w.Write(n, v);
        w.Commit();
    }

    [Theory]
    [InlineData("next_batch", "x", "metadata 'next_batch' has the invalid value 'x'")]
    [InlineData("next_batch", "9", "metadata 'next_batch' has the invalid value '9'")]
    [InlineData("loss_sum", "NaN", "metadata 'loss_sum' has the invalid value 'NaN'")]
    [InlineData("tokens", "-4", "metadata 'tokens' has the invalid value '-4'")]
    [InlineData("tensors", "7", "metadata 'tensors' has the invalid value '7'")]
    [InlineData("skipped", null, "metadata 'skipped' is missing")]
    [InlineData("tokens", "11", "checksum mismatch")]
    [InlineData("checksum", "00", "checksum mismatch")]
    public void DamagedMetadataIsRefusedByName(string key, string? value, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        SaveSample(path);
        Rewrite(path, m => { if (value == null) m.Remove(key); else m[key] = value; });
        var e = Assert.Throws<InputException>(() => LoadSample(path));
        Assert.Contains(path + ": the gradient checkpoint is damaged", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AMissingOrMisshapenTensorIsRefusedNotRestartedFromZero()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        SaveSample(path);
        Rewrite(path, _ => { }, keep: n => n != "g.1");
        Assert.Contains("tensor g.1 (b) is missing", Assert.Throws<InputException>(() => LoadSample(path)).Message);
        SaveSample(path, fisher: true);
        Assert.Contains("metadata 'fisher' is 1", Assert.Throws<InputException>(() => LoadSample(path)).Message);
        Assert.NotNull(LoadSample(path, fisher: true));
    }

    [Fact]
    public void WeightContentHashSeesValuesTheHeadersDoNot()
    {
        using var dir = new TempDir();
        foreach (var seed in new[] { "1", "2" })
            Assert.Equal(0, Cwa.Tests.EndToEnd.Cli.Run("create-test-model", "--preset", "tiny", "--seed", seed, "--out", dir.File(seed), "--quiet").Code);
        using var a = CheckpointFolder.Open(dir.File("1"));
        using var b = CheckpointFolder.Open(dir.File("2"));
        Assert.Equal(a.ShardHeaderSha256.Values, b.ShardHeaderSha256.Values);
        Assert.NotEqual(a.ContentHash(), b.ContentHash());
        using var a2 = CheckpointFolder.Open(dir.File("1"));
        Assert.Equal(a.ContentHash(), a2.ContentHash());
        Assert.Equal(16, a.ContentHash().Length);
    }
}
