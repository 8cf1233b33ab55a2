using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Pipeline;
using Cwa.Core.Tokenization;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

/// <summary>
/// hutchinson_diag against a direct computation. With one probe z the estimate is z * (Hz) entrywise, so summed
/// over every weight it equals z^T H z: the second derivative of the loss along z, which the test computes
/// independently from losses alone (a second difference), never from gradients.
/// </summary>
public class HutchinsonTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void OneProbeGivesTheCurvatureAlongTheProbe()
    {
        using var ckpt = CheckpointFolder.Open(tiny.Model);
        var tok = TokenizerLoader.Load(tiny.Model, ckpt.Config);
        var w32 = ModelWeights<float>.Load(ckpt.Config, ckpt);
        var batches = CalibrationSet.MakeBatches(CalibrationSet.Build(BuiltInCorpus.Calibration, tok, 10, 4, 3), 2, tok.PadId);
        using var model = FaultInjectingBackend.Open(tiny.Model);
        const ulong seed = 7;
        var estimate = HutchinsonPass.Run(model, batches, new AnalyzeRequest { HutchinsonProbes = 1, Seeds = [(int)seed] }, NullProgress.Instance);
        double zHz = estimate.Sum(t => t.Sum(v => (double)v));

        // The probe stream is part of the documented contract: Rademacher z from SplitMix64.For(seed, probe, tensor, 0x48).
        var w = ModelWeights<double>.Zeros(ckpt.Config);
        var z = w.ZerosLike();
        for (int t = 0; t < w.Count; t++)
        {
            var rng = SplitMix64.For(seed, 0, t, 0x48);
            for (int j = 0; j < w[t].Length; j++) { w[t][j] = w32[t][j]; z[t][j] = (rng.NextULong() & 1) == 0 ? -1 : 1; }
        }
        var net = new LlamaModel<double>(w);
        var origin = w.Clone();
        double Loss(double step)
        {
            for (int t = 0; t < w.Count; t++)
                for (int j = 0; j < w[t].Length; j++) w[t][j] = origin[t][j] + step * z[t][j];
            return batches.Sum(b => net.ForwardLoss(b)); // G's convention: sum over batches of the batch-mean loss
        }
        const double e = 1e-4;
        double direct = (Loss(e) - 2 * Loss(0) + Loss(-e)) / (e * e);
        Assert.True(Math.Abs(zHz - direct) <= 1e-3 * Math.Abs(direct) + 1e-6, $"z^T H z from the estimate {zHz:G8} vs second difference of the loss {direct:G8}");
    }
}
