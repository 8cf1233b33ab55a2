using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Sensitivity;
using Cwa.Core.Tokenization;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

public class NonFiniteBatchTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    /// <summary>Delegates to the CPU backend but reports a NaN loss for one chosen batch, as an overflow would.</summary>
    private sealed class FaultyBackend(IBackend inner, int badBatch) : IBackend
    {
        private int _calls;
        public string Name => inner.Name;
        public ModelConfig Config => inner.Config;
        public IReadOnlyList<ParameterSpec> Specs => inner.Specs;
        public IActivationObserver<float>? Observer { get => inner.Observer; set => inner.Observer = value; }
        public double ForwardLoss(Batch batch) => inner.ForwardLoss(batch);
        public double ForwardBackward(Batch batch, double scale) { double l = inner.ForwardBackward(batch, scale); return _calls++ == badBatch ? double.NaN : l; }
        public EvalResult Evaluate(Batch batch) => inner.Evaluate(batch);
        public void ClearGradients() => inner.ClearGradients();
        public void ReadGradient(int t, Span<float> d) => inner.ReadGradient(t, d);
        public void ReadWeight(int t, Span<float> d) => inner.ReadWeight(t, d);
        public void WriteWeights(int t, ReadOnlySpan<long> i, ReadOnlySpan<float> v) => inner.WriteWeights(t, i, v);
        public void Dispose() => inner.Dispose();
    }

    private (LoadedModel Model, IReadOnlyList<Batch> Batches) Load(int badBatch)
    {
        var ckpt = CheckpointFolder.Open(tiny.Model);
        var tok = TokenizerLoader.Load(tiny.Model, ckpt.Config);
        var weights = ModelWeights<float>.Load(ckpt.Config, ckpt);
        var model = new LoadedModel
        {
            Path = tiny.Model, DisplayName = "tiny", Checkpoint = ckpt, Tokenizer = tok, Weights = weights, HeldType = DType.F32,
            Backend = new FaultyBackend(new CpuBackend(weights), badBatch),
        };
        var batches = CalibrationSet.MakeBatches(CalibrationSet.Build(BuiltInCorpus.Calibration, tok, 32, 6, 1), 2, tok.PadId);
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
