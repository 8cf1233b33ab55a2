using Cwa.Core.Data;
using Cwa.Core.Engine;
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
        AnalyzeRequest r, IProgressSink progress)
    {
        var backend = model.Backend;
        int tensors = backend.Specs.Count;
        double lossSum = 0;
        long tokens = batches.Sum(b => (long)b.TargetCount);
        double scale = r.GradReduction switch
        {
            "sum" => 1.0,
            "mean" => 1.0 / batches.Count,
            _ => throw new InputException($"--grad-reduction: unknown value '{r.GradReduction}' (valid: sum, mean)"),
        };

        if (metric.NeedsActivations() || metric == SensitivityMetric.Magnitude)
        {
            var stats = metric.NeedsActivations() ? new ActivationStats() : null;
            backend.Observer = stats;
            using (var phase = progress.Start("forward", batches.Count))
                for (int i = 0; i < batches.Count; i++)
                {
                    lossSum += CheckLoss(backend.ForwardLoss(batches[i]), i) * batches[i].TargetCount;
                    phase.Advance();
                }
            backend.Observer = null;
            return new ScoreSources { CalibrationLoss = lossSum / tokens, CalibrationTokens = tokens, CalibrationSequences = batches.Sum(b => b.BatchSize), Activations = stats };
        }

        bool fisherNeeded = metric.NeedsFisher(curvature);
        var fisher = fisherNeeded ? new FisherAccumulator(tensors) : null;
        var gradient = new float[tensors][];
        backend.ClearGradients();
        using (var phase = progress.Start("gradients", batches.Count))
        {
            for (int i = 0; i < batches.Count; i++)
            {
                if (fisherNeeded) backend.ClearGradients();
                lossSum += CheckLoss(backend.ForwardBackward(batches[i], fisherNeeded ? 1.0 : scale), i) * batches[i].TargetCount;
                if (fisherNeeded)
                    for (int t = 0; t < tensors; t++)
                    {
                        var g = gradient[t] ??= new float[backend.Specs[t].NumElements];
                        var batchGrad = new float[g.Length];
                        backend.ReadGradient(t, batchGrad);
                        fisher!.Add(t, batchGrad);
                        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(batchGrad, (float)scale, g, g);
                    }
                phase.Advance();
            }
        }
        if (!fisherNeeded)
            for (int t = 0; t < tensors; t++)
            {
                gradient[t] = new float[backend.Specs[t].NumElements];
                backend.ReadGradient(t, gradient[t]);
            }
        for (int t = 0; t < tensors; t++)
        {
            int bad = Array.FindIndex(gradient[t], v => !float.IsFinite(v));
            if (bad >= 0) throw new CwaException($"gradient of {backend.Specs[t].Name} is not finite at flat index {bad}; check the model weights and data");
        }
        float[][]? hessian = metric.NeedsHessian(curvature) ? HutchinsonPass.Run(model, batches, r, progress) : null;
        return new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, CalibrationTokens = tokens, CalibrationSequences = batches.Sum(b => b.BatchSize),
            Gradient = gradient, Fisher = fisher, HessianDiag = hessian,
        };
    }

    private static double CheckLoss(double loss, int batch) =>
        double.IsFinite(loss) ? loss : throw new CwaException($"calibration batch {batch} produced a non-finite loss ({loss}); check the model weights and data");
}
