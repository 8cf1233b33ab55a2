using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>
/// From calibration batches to a ranking, whichever way the model is held: in memory, a gradient pass over
/// the whole model then a scoring pass over its tensors; streamed, one layer-major sweep that scores each tensor
/// as it completes. Timings go to the "gradients" (or "forward") and "scoring" phases either way.
/// </summary>
internal static class RankingPass
{
    public static (ScoreSources Sources, RankingResult Ranking) Run(LoadedModel model, IReadOnlyList<Batch> batches, SensitivityMetric metric,
        ObdCurvature curvature, RankingMode mode, int maxK, AnalyzeRequest r, string? dumpPath, IProgressSink progress,
        PhaseTimer? timer = null, GradientCheckpoint? checkpoint = null, ScoreExtras? extras = null, ShardSet? shards = null)
    {
        // Forward-only metrics (wanda, act_outlier, magnitude) have no gradient phase: theirs is called forward.
        string pass = metric == SensitivityMetric.Magnitude || metric.NeedsActivations() ? "forward" : "gradients";
        if (model.Backend is StreamedBackend streamed)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var (sources, ranking, scoringSeconds) = StreamingAnalysis.Run(streamed, batches, metric, curvature, mode, maxK, r, dumpPath, progress, extras, shards);
            timer?.Record(pass, sw.Elapsed.TotalSeconds - scoringSeconds);
            timer?.Record("scoring", scoringSeconds);
            return (sources, ranking);
        }
        ScoreSources s;
        // cwa merge: the shards' summed partial sums stand for the gradient pass.
        if (shards != null)
            using (timer?.Phase("merge"))
                s = metric.NeedsActivations() ? shards.Sources(null, null, activations: shards.Activations(model.Backend.Specs))
                    : ShardFiles.Merge(shards, model.Backend.Specs, metric.NeedsFisher(curvature));
        else
            using (timer?.Phase(pass))
                s = GradientPass.Run(model, batches, metric, curvature, r, progress, checkpoint);
        // Activations are not needed while scoring: their memory goes back before the score buffers come.
        model.Backend.ReleaseWorkspace();
        RankingResult result;
        using (timer?.Phase("scoring"))
            result = ScoringPass.Run(model.Backend, s, metric, curvature, mode, maxK, r.Include1D, dumpPath, progress, r.Threads, extras);
        return (s, result);
    }
}
