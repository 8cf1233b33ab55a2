using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Pipeline;
using Cwa.Core.Sensitivity;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

public class ResumeTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    /// <summary>Simulates a run killed part-way: the forward/backward of one batch never returns.</summary>
    private LoadedModel Model(int crashAt = -1) =>
        FaultInjectingBackend.Open(tiny.Model, (call, loss) => call == crashAt ? throw new OperationCanceledException("killed") : loss);

    [Theory]
    [InlineData(SensitivityMetric.GradXWeight)]
    [InlineData(SensitivityMetric.Fisher)]
    public void ResumedRunEqualsAnUninterruptedOneBitForBit(SensitivityMetric metric)
    {
        using var dir = new TempDir();
        using var healthy = Model();
        var batches = CalibrationSet.MakeBatches(CalibrationSet.Build(BuiltInCorpus.Calibration, healthy.Tokenizer, 24, 12, 5), 2, healthy.Tokenizer.PadId);
        var r = new AnalyzeRequest { Resume = true };
        string path = dir.File("ckpt.safetensors");

        var reference = GradientPass.Run(healthy, batches, metric, ObdCurvature.Fisher, r, NullProgress.Instance, new GradientCheckpoint(dir.File("other.safetensors"), "key", 2));

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
    public void CheckpointOfAnotherRunIsRefused()
    {
        using var dir = new TempDir();
        string path = dir.File("ckpt.safetensors");
        new GradientCheckpoint(path, "run-a", 2).Save(new GradientState(2, 1.0, 10, [], [new float[3]], null));
        var e = Assert.Throws<InputException>(() => new GradientCheckpoint(path, "run-b", 2).Load(false));
        Assert.Contains("belongs to a different run", e.Message);
        Assert.Equal(2, new GradientCheckpoint(path, "run-a", 2).Load(false)!.NextBatch);
    }
}
