using System.Diagnostics;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Gradient (or activation) pass and scoring of a streamed model in one layer-major sweep: each tensor is scored
/// as soon as its sums over every batch are complete, its top entries' gradients are kept for the CSV, and its
/// buffers are let go. Memory is one block's weights and sums plus, for the embedding and lm_head, their sums.
/// </summary>
internal static class StreamingAnalysis
{
    /// <summary>Rows of a vocabulary tensor scored at a time (its weights are widened chunk by chunk).</summary>
    private const int ScoreRows = 1024;

    /// <param name="shards">cwa merge: the shards' sums stand for the gradient pass, read tensor by tensor</param>
    public static (ScoreSources Sources, RankingResult Ranking, double ScoringSeconds) Run(StreamedBackend backend, IReadOnlyList<Batch> batches,
        SensitivityMetric metric, ObdCurvature curvature, RankingMode mode, int maxK, AnalyzeRequest r, string? dumpPath, IProgressSink progress, ScoreExtras? extras = null,
        ShardSet? shards = null)
    {
        CheckSupported(metric, curvature, r, backend.Config);
        var specs = backend.Specs;
        var scored = ScoringPass.ScoredTensors(specs, metric, r.Include1D, maxK).ToHashSet();
        using var dump = ScoringPass.OpenDump(dumpPath, specs, scored.Order().ToList(), metric);
        var scorer = new TensorScorer(metric, curvature, maxK, dump, r.Threads, extras);
        var builder = new RankingBuilder(specs, mode, maxK);
        var captured = new Dictionary<ScoredIndex, float>();
        var scoring = new Stopwatch();
        ActivationStats? activations = metric.NeedsActivations() ? new ActivationStats() : null;

        void Score(CompletedTensor c)
        {
            if (!scored.Contains(c.Index)) return;
            scoring.Start();
            var spec = specs[c.Index];
            // A block matrix the products read as mapped is widened here, once, for its scores.
            var weights = c.Weights.Length == 0 && spec.Block >= 0 ? backend.Weights.Widened(c.Index) : c.Weights;
            var summary = weights.Length > 0
                ? scorer.Score(c.Index, Input(spec, weights, c.Gradient, c.Fisher, activations))
                : ScoreVocabulary(backend, scorer, c, activations);
            if (c.Gradient != null)
                foreach (var s in summary.Top.Concat(summary.Dumped ?? [])) captured[s] = c.Gradient[s.FlatIndex];
            builder.Add(c.Index, summary);
            // A vocabulary tensor's 2 GB score buffer must not stay through the blocks (theirs are a tenth of it).
            if (weights.Length == 0) scorer.Release();
            scoring.Stop();
        }

        var pass = backend.Pass;
        double lossSum = 0, batchLossSum = 0, seconds;
        long tokens = 0;
        int used = 0;
        double flops = 0;
        IReadOnlyList<string> skipped = [];
        var loop = Stopwatch.StartNew();
        bool gradients = metric != SensitivityMetric.Magnitude && !metric.NeedsActivations();
        bool magnitude = metric == SensitivityMetric.Magnitude;
        if (shards != null)
        {
            // Score reads the statistics through this variable: the merged ones replace the empty ones.
            if (activations != null) activations = shards.Activations(specs);
            using (var phase = progress.Start("scoring the merged shards (streamed)", specs.Count))
                MergedSweep(backend, shards, activations != null ? null : metric.NeedsFisher(curvature), Score, phase);
            scorer.Release();
            dump?.Commit();
            return (shards.Sources(null, null, activations != null ? null : captured, activations), builder.Build(scorer.Quantiles), scoring.Elapsed.TotalSeconds);
        }
        using (var phase = magnitude ? progress.Start("scoring |W| (streamed)", backend.Config.NumLayers)
                   : progress.Start(gradients ? "gradients (layer-major)" : "forward (layer-major)", pass.Steps(batches.Count, gradients)))
        {
            if (gradients)
            {
                var sums = GradientSweep(backend, batches, metric, curvature, r, Score, phase);
                (lossSum, tokens, batchLossSum, used, flops, skipped) = (sums.LossSum, sums.Tokens, sums.BatchLossSum, sums.Used, sums.Flops, sums.Skipped);
            }
            else if (magnitude)
            {
                // |W| needs no data: each block is widened once and scored, then the vocabulary tensors chunk by chunk.
                backend.Weights.ForEachTensor((t, w) => Score(new CompletedTensor(t, w, null, null)), () => phase.Advance());
            }
            else
            {
                var results = pass.ForwardAndLoss(batches, activations, l =>
                {
                    foreach (int t in backend.Weights.BlockMembers(l)) Score(new CompletedTensor(t, backend.Weights.Slots[t], null, null));
                }, phase);
                (lossSum, tokens, batchLossSum) = ForwardLosses(results, batches);
                used = batches.Count;
                backend.Weights.OutsideBlocks((t, w) => Score(new CompletedTensor(t, w, null, null)));
            }
            seconds = loop.Elapsed.TotalSeconds;
        }
        scorer.Release();
        dump?.Commit();
        if (metric == SensitivityMetric.Magnitude)
            return (new ScoreSources { CalibrationLoss = double.NaN, CalibrationTokens = 0, CalibrationSequences = 0 }, builder.Build(scorer.Quantiles), scoring.Elapsed.TotalSeconds);
        var sources = new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / used, CalibrationTokens = tokens,
            CalibrationInputTokens = GradientPass.InputTokens(batches), CalibrationSequences = batches.Sum(b => b.BatchSize),
            Activations = activations, SkippedBatches = skipped, CapturedGradients = gradients ? captured : null,
            ForwardBackwardSeconds = gradients ? seconds - scoring.Elapsed.TotalSeconds : 0, ForwardBackwardFlops = flops,
            StageSeconds = magnitude ? null : new Dictionary<string, double>(pass.Clock.Seconds),
            BackwardActivations = gradients ? pass.BackwardActivations : null,
        };
        return (sources, builder.Build(scorer.Quantiles), scoring.Elapsed.TotalSeconds);
    }

    /// <summary>A layer-major forward pass that only observes: the activation statistics and the loss (a shard of wanda or act_outlier).</summary>
    internal static ScoreSources Observe(StreamedBackend backend, IReadOnlyList<Batch> batches, IProgressSink progress)
    {
        var activations = new ActivationStats();
        LossHead<float>.Result[] results;
        using (var phase = progress.Start("forward (layer-major)", backend.Pass.Steps(batches.Count, backward: false)))
            results = backend.Pass.ForwardAndLoss(batches, activations, null, phase);
        var (lossSum, tokens, batchLossSum) = ForwardLosses(results, batches);
        return new ScoreSources
        {
            CalibrationLoss = lossSum / tokens, MeanBatchLoss = batchLossSum / batches.Count, CalibrationTokens = tokens,
            CalibrationInputTokens = GradientPass.InputTokens(batches), CalibrationSequences = batches.Sum(b => b.BatchSize), Activations = activations,
        };
    }

    /// <summary>Loss sums of a forward-only pass; a forward pass skips no batch, so a non-finite loss stops the run.</summary>
    private static (double LossSum, long Tokens, double BatchLossSum) ForwardLosses(LossHead<float>.Result[] results, IReadOnlyList<Batch> batches)
    {
        double lossSum = 0, batchLossSum = 0;
        long tokens = 0;
        for (int b = 0; b < batches.Count; b++)
        {
            double loss = results[b].Targets == 0 ? 0 : results[b].SumNll / results[b].Targets;
            if (!double.IsFinite(loss))
                throw new CwaException($"calibration batch {b} produced a non-finite loss ({loss}); check the model weights and data");
            lossSum += loss * batches[b].TargetCount;
            tokens += batches[b].TargetCount;
            batchLossSum += loss;
        }
        return (lossSum, tokens, batchLossSum);
    }

    /// <summary>Loss and token sums of a layer-major gradient sweep over the used batches.</summary>
    internal sealed record SweepSums(double LossSum, long Tokens, double BatchLossSum, int Used, double Flops, IReadOnlyList<string> Skipped);

    /// <summary>
    /// One layer-major gradient pass: each tensor's sums over every batch go to consume as soon as they are complete
    /// (scoring, or a shard file).
    /// </summary>
    internal static SweepSums GradientSweep(StreamedBackend backend, IReadOnlyList<Batch> batches, SensitivityMetric metric, ObdCurvature curvature, AnalyzeRequest r,
        Action<CompletedTensor> consume, IPhaseProgress? phase)
    {
        double scale = r.GradReduction switch
        {
            "sum" => 1.0,
            "mean" => 1.0 / batches.Count,
            _ => throw new InputException($"--grad-reduction: unknown value '{r.GradReduction}' (valid: sum, mean)"),
        };
        var mode = metric.NeedsFisher(curvature) || r.SkipNonFinite ? Accumulation.PerBatch : Accumulation.Sum;
        var losses = backend.Pass.Gradients(batches, mode, scale, r.SkipNonFinite, consume, phase);
        double lossSum = 0, batchLossSum = 0, flops = 0;
        long tokens = 0;
        int used = 0;
        for (int b = 0; b < batches.Count; b++)
        {
            var res = losses.Results[b];
            double loss = res.Targets == 0 ? 0 : res.SumNll / res.Targets;
            if (!double.IsFinite(loss)) continue;
            lossSum += loss * batches[b].TargetCount;
            tokens += batches[b].TargetCount;
            batchLossSum += loss;
            used++;
            flops += FlopCount.ForwardBackward(backend.Config, batches[b]);
        }
        return new SweepSums(lossSum, tokens, batchLossSum, used, flops, losses.Skipped);
    }

    /// <summary>
    /// A streamed cwa merge: every tensor's sums added over the shards and handed to consume, block by block (each
    /// block's weights widened once), then the 1-D and vocabulary tensors; one tensor's sums in memory at a time.
    /// </summary>
    /// <param name="fisher">whether the shards hold Fisher sums too; null: they hold activation statistics, and tensors come without sums</param>
    private static void MergedSweep(StreamedBackend backend, ShardSet shards, bool? fisher, Action<CompletedTensor> consume, IPhaseProgress phase)
    {
        var specs = backend.Specs;
        var buffers = new Dictionary<long, (float[] G, float[] F)>();
        void Merge(int t, float[] weights)
        {
            long n = specs[t].NumElements;
            if (fisher is not { } withFisher)
            {
                consume(new CompletedTensor(t, weights, null, null));
                phase.Advance();
                return;
            }
            if (!buffers.TryGetValue(n, out var b)) buffers[n] = b = (new float[n], withFisher ? new float[n] : []);
            shards.Sum(t, b.G, b.F);
            consume(new CompletedTensor(t, weights, b.G, withFisher ? b.F : null));
            // The vocabulary tensors' sums (2 GB each at 8B) are not kept for the next one.
            if (weights.Length == 0) buffers.Remove(n);
            phase.Advance();
        }
        backend.Weights.ForEachTensor(Merge);
    }

    /// <summary>What a streamed run cannot do, refused before any work with what to do instead.</summary>
    public static void CheckSupported(SensitivityMetric metric, ObdCurvature curvature, AnalyzeRequest r, Models.ModelConfig config)
    {
        if (config.TieWordEmbeddings && (metric.NeedsFisher(curvature) || r.SkipNonFinite))
            throw new InputException("per-batch gradients (fisher, obd, --skip-nonfinite) of a model with tied embeddings need the in-memory mode: use --streaming off");
        if (metric.NeedsHessian(curvature))
            throw new InputException($"--metric {metric.Name()}{(metric == SensitivityMetric.Obd ? " with --obd-curvature hutchinson" : "")} needs the whole model in fp64 and is not available with layer streaming; use --streaming off (or obd with --obd-curvature fisher)");
        if (r.QuantizeAllButTop)
            throw new InputException("--quantize-all-but-top perturbs every weight at once, which layer streaming holds only as an overlay of the few it touches; use --streaming off");
        if (r.CheckpointEvery > 0 || r.Resume)
            throw new InputException("--checkpoint-every and --resume are not available with layer streaming yet; use --streaming off or drop them");
    }

    private static TensorScoreInput Input(ParameterSpec spec, float[] w, float[]? g, float[]? f, ActivationStats? a) => new()
    {
        Spec = spec, Weights = w, Gradient = g, FisherSum = f,
        InputNorms = a?.InputNorms(spec.Name), InputMaxAbs = a?.InputMaxAbs(spec.Name),
    };

    /// <summary>
    /// The embedding or lm_head (2 GB in fp32 at 8B) scored chunk by chunk of rows, its weights widened per chunk, so
    /// only its sums and the scores are whole. Fisher-based scores are computed in place of the Fisher sums.
    /// </summary>
    private static ScoreSummary ScoreVocabulary(StreamedBackend backend, TensorScorer scorer, CompletedTensor c, ActivationStats? a)
    {
        var spec = backend.Specs[c.Index];
        int n = (int)spec.NumElements, cols = spec.Cols;
        var scores = c.Fisher != null && scorer.Metric is SensitivityMetric.Fisher or SensitivityMetric.Obd ? c.Fisher : scorer.Buffer(n);
        float[] w = [], g = [], f = [];
        for (int row = 0; row < spec.Rows; row += ScoreRows)
        {
            int rows = Math.Min(ScoreRows, spec.Rows - row), start = row * cols, len = rows * cols;
            if (w.Length != len) (w, g, f) = (new float[len], c.Gradient != null ? new float[len] : [], c.Fisher != null ? new float[len] : []);
            backend.Weights.Fill(c.Index, start, w);
            c.Gradient?.AsSpan(start, len).CopyTo(g);
            c.Fisher?.AsSpan(start, len).CopyTo(f);
            var chunk = Input(spec with { Shape = [rows, cols] }, w, c.Gradient != null ? g : null, c.Fisher != null ? f : null, a);
            ScoreFunctions.Compute(scorer.Metric, chunk, scores.AsSpan(start, len), scorer.Curvature);
        }
        return scorer.Summarise(c.Index, spec, scores, n);
    }
}
