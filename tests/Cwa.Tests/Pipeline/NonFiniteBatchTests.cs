using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Pipeline;
using Cwa.Core.Sensitivity;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

public class NonFiniteBatchTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private (LoadedModel Model, IReadOnlyList<Batch> Batches) Load(int badBatch)
    {
        var model = FaultInjectingBackend.Open(tiny.Model, (call, loss) => call == badBatch ? double.NaN : loss);
        var batches = CalibrationSet.MakeBatches(CalibrationSet.Build(BuiltInCorpus.Calibration, model.Tokenizer, 32, 6, 1), 2, model.Tokenizer.PadId);
        return (model, batches);
    }

    [Fact]
    public void NonFiniteLossStopsTheRunNamingTheBatch()
    {
        var (model, batches) = Load(badBatch: 1);
        using (model)
        {
            var e = Assert.Throws<CwaException>(() => GradientPass.Run(model, batches, SensitivityMetric.GradXWeight, ObdCurvature.Fisher, new AnalyzeRequest(), NullProgress.Instance));
            Assert.Contains("calibration batch 1 produced a non-finite loss", e.Message);
            Assert.Contains("--skip-nonfinite", e.Message);
        }
    }

    [Fact]
    public void SkipNonFiniteDropsExactlyThatBatchAndRecordsIt()
    {
        var (model, batches) = Load(badBatch: 1);
        using (model)
        {
            var r = new AnalyzeRequest { SkipNonFinite = true };
            var s = GradientPass.Run(model, batches, SensitivityMetric.GradXWeight, ObdCurvature.Fisher, r, NullProgress.Instance);
            Assert.Equal(["batch 1: loss NaN"], s.SkippedBatches);
            Assert.Equal(batches.Where((_, i) => i != 1).Sum(b => (long)b.TargetCount), s.CalibrationTokens);

            // The gradient equals the sum over the good batches only.
            var (clean, _) = Load(badBatch: -1);
            using (clean)
            {
                var good = batches.Where((_, i) => i != 1).ToList();
                var expected = GradientPass.Run(clean, good, SensitivityMetric.GradXWeight, ObdCurvature.Fisher, new AnalyzeRequest(), NullProgress.Instance);
                for (int t = 0; t < expected.Gradient!.Length; t++)
                    for (int j = 0; j < expected.Gradient[t].Length; j++)
                        Assert.Equal(expected.Gradient[t][j], s.Gradient![t][j], 1e-6f);
                Assert.Equal(expected.CalibrationLoss, s.CalibrationLoss, 9);
            }
        }
    }
}
