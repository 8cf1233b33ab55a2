using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Runs the calibration batches through the backend and gathers what the metric needs. G follows the Python
/// project's convention: the sum over batches of the gradient of each batch's mean loss (--grad-reduction mean
/// divides by the number of batches).
/// </summary>
public static class GradientPass
{
    public static ScoreSources Run(LoadedModel model, IReadOnlyList<Batch> batches, SensitivityMetric metric, ObdCurvature curvature,
        AnalyzeRequest r, IProgressSink progress, GradientCheckpoint? checkpoint = null)
    {
        var backend = model.Backend;
        int tensors = backend.Specs.Count;
        double lossSum = 0, batchLossSum = 0;
        long tokens = 0;
        int used = 0;
        void Use(double loss, Batch b)
        {
            lossSum += loss * b.TargetCount;
            tokens += b.TargetCount;
            batchLossSum += loss;
            used++;
        }
        double scale = r.GradReduction switch
        {
            "sum" => 1.0,
            "mean" => 1.0 / batches.Count,
            _ => throw new InputException($"--grad-reduction: unknown value '{r.GradReduction}' (valid: sum, mean)"),
        };

        // |W| needs no data: no pass at all (the loss stays NaN and is not reported).
        if (metric == SensitivityMetric.Magnitude)
            return new ScoreSources { CalibrationLoss = double.NaN, CalibrationTokens = 0, CalibrationSequences = 0 };
        if (metric.NeedsActivations())
        {
            var stats = metric.NeedsActivations() ? new ActivationStats() : null;
            backend.Observer = stats;
            using (var phase = progress.Start("forward", batches.Count))
                for (int i = 0; i < batches.Count; i++)
                {
                    Use(CheckLoss(backend.ForwardLoss(batches[i]), i), batches[i]);
                    phase.Advance();
                }
            backend.Observer = null;
            return new ScoreSources
            {
                CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / used, CalibrationTokens = tokens, CalibrationInputTokens = InputTokens(batches),
                CalibrationSequences = batches.Sum(b => b.BatchSize), Activations = stats,
            };
        }

        bool fisherNeeded = metric.NeedsFisher(curvature);
        // Per-batch gradients are needed for the Fisher sum and to drop a bad batch without poisoning the sum.
        // Otherwise the backend accumulates in place, checkpoint or not, so --checkpoint-every never changes a result.
        bool perBatch = fisherNeeded || r.SkipNonFinite;
        var fisher = fisherNeeded ? new FisherAccumulator(tensors) : null;
        var gradient = new float[]?[tensors];
        var skipped = new List<string>();
        // One set of per-batch gradient buffers, overwritten by every batch (never a model-sized allocation per batch).
        var batchGrads = perBatch ? new float[tensors][] : [];
        int start = 0;
        backend.ClearGradients();
        TensorReader? saveFisher = fisher == null ? null : (t, into) => Copy(fisher.Sums[t], into);
        TensorReader saveGradient = perBatch ? (t, into) => Copy(gradient[t], into) : backend.ReadGradient;
        if (checkpoint != null && r.Resume && checkpoint.Load(backend.Specs, batches.Count,
                perBatch ? (t, v) => gradient[t] = v.ToArray() : backend.WriteGradient,
                fisher == null ? null : (t, v) => fisher.Sums[t] = v.ToArray()) is { } saved)
        {
            (start, lossSum, tokens, batchLossSum, used) = (saved.NextBatch, saved.LossSum, saved.Tokens, saved.BatchLossSum, saved.BatchesUsed);
            skipped.AddRange(saved.Skipped);
            progress.Info($"resuming from {checkpoint.Path} at batch {start} of {batches.Count}");
        }
        var loop = System.Diagnostics.Stopwatch.StartNew();
        double flops = 0;
        using (var phase = progress.Start("gradients", batches.Count))
        {
            phase.Advance(start);
            for (int i = start; i < batches.Count; i++)
            {
                if (checkpoint != null && i > start && i % checkpoint.Every == 0)
                    checkpoint.Save(new CheckpointPosition(i, lossSum, tokens, skipped, batchLossSum, used), backend.Specs, saveGradient, saveFisher);
                phase.Advance();
                if (perBatch) backend.ClearGradients();
                double loss = backend.ForwardBackward(batches[i], perBatch ? 1.0 : scale);
                flops += FlopCount.ForwardBackward(backend.Config, batches[i]);
                if (!double.IsFinite(loss) && r.SkipNonFinite) { skipped.Add($"batch {i}: loss {loss}"); continue; }
                CheckLoss(loss, i);
                if (!perBatch)
                {
                    Use(loss, batches[i]);
                    continue;
                }
                string? bad = null;
                for (int t = 0; t < tensors && bad == null; t++)
                {
                    batchGrads[t] ??= new float[backend.Specs[t].NumElements];
                    backend.ReadGradient(t, batchGrads[t]);
                    long j = NonFinite.FirstIndex(batchGrads[t]);
                    if (j >= 0) bad = $"batch {i}: gradient of {backend.Specs[t].Name} not finite at flat index {j}";
                }
                if (bad != null)
                {
                    if (!r.SkipNonFinite) throw new CwaException($"calibration {bad}; check the model weights and data (or pass --skip-nonfinite)");
                    skipped.Add(bad);
                    continue;
                }
                Use(loss, batches[i]);
                for (int t = 0; t < tensors; t++)
                {
                    var g = gradient[t] ??= new float[batchGrads[t].Length];
                    fisher?.Add(t, batchGrads[t]);
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(batchGrads[t], (float)scale, g, g);
                }
            }
        }
        double loopSeconds = loop.Elapsed.TotalSeconds;
        checkpoint?.Delete();
        if (skipped.Count == batches.Count)
            throw new CwaException($"every calibration batch had a non-finite loss or gradient ({skipped[0]})");
        // A device that scores where the sums live keeps them there (it checks them for NaN/Inf while scoring).
        var onDevice = !perBatch && !r.DumpScores && r.ScoresParquet == null && backend is IDeviceScoring ds && ds.CanScore(metric) ? ds : null;
        float[][]? sums = null;
        if (onDevice == null)
        {
            if (!perBatch)
                for (int t = 0; t < tensors; t++)
                {
                    // The CPU backend's sums are host arrays already: use them rather than a second model-sized copy.
                    if (backend is CpuBackend cpu) { gradient[t] = cpu.Gradients[t]; continue; }
                    var g = new float[backend.Specs[t].NumElements];
                    backend.ReadGradient(t, g);
                    gradient[t] = g;
                }
            sums = gradient.Select((g, t) => g ?? new float[backend.Specs[t].NumElements]).ToArray();
            for (int t = 0; t < tensors; t++)
            {
                long bad = NonFinite.FirstIndex(sums[t]);
                if (bad >= 0) throw new CwaException(NonFiniteGradient(backend.Specs[t].Name, bad));
            }
        }
        if (metric.NeedsHessian(curvature))
            progress.Info($"hutchinson: {HutchinsonPass.Passes(r.HutchinsonProbes)} more gradient passes over all {batches.Count} batches in fp64 " +
                $"({r.HutchinsonProbes} probes + 1), each several times the fp32 pass just done (set the count with --hutchinson-probes)");
        float[][]? hessian = metric.NeedsHessian(curvature) ? HutchinsonPass.Run(model, batches, r, progress) : null;
        return new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / used, CalibrationTokens = tokens, CalibrationInputTokens = InputTokens(batches),
            CalibrationSequences = batches.Sum(b => b.BatchSize),
            Gradient = sums, OnDevice = onDevice, Fisher = fisher, HessianDiag = hessian, SkippedBatches = skipped, ForwardBackwardSeconds = loopSeconds, ForwardBackwardFlops = flops,
        };
    }

    /// <summary>Real (non-padding) tokens of the batches: what the model reads, one more per sequence than it predicts.</summary>
    public static long InputTokens(IReadOnlyList<Batch> batches) => batches.Sum(b => (long)b.Lengths.Sum());

    private static void Copy(float[]? sum, Span<float> into)
    {
        if (sum == null) into.Clear(); // no good batch yet: the sum is zero
        else sum.CopyTo(into);
    }

    public static string NonFiniteGradient(string tensor, long index) =>
        $"gradient of {tensor} is not finite at flat index {index}; check the model weights and data";

    private static double CheckLoss(double loss, int batch) =>
        double.IsFinite(loss) ? loss : throw new CwaException($"calibration batch {batch} produced a non-finite loss ({loss}); check the model weights and data (or pass --skip-nonfinite)");
}
