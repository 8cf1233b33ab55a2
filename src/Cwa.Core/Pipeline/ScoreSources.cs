using Cwa.Core.Sensitivity;

namespace Cwa.Core.Pipeline;

/// <summary>What a gradient/activation pass produced, per tensor; the scoring pass reads it one tensor at a time.</summary>
public sealed class ScoreSources
{
    public required double CalibrationLoss { get; init; }
    /// <summary>Mean over the batches used of each batch's mean loss (the Python original's avg_loss).</summary>
    public double MeanBatchLoss { get; init; } = double.NaN;
    /// <summary>Prediction targets (tokens with a next token) of the batches used.</summary>
    public required long CalibrationTokens { get; init; }
    /// <summary>Real tokens the model read in calibration.</summary>
    public long CalibrationInputTokens { get; init; }
    public required int CalibrationSequences { get; init; }
    /// <summary>Summed (or averaged, per --grad-reduction) gradient; null for forward-only metrics.</summary>
    public float[][]? Gradient { get; init; }
    public FisherAccumulator? Fisher { get; init; }
    /// <summary>Set when the gradient sums stayed on the device (Gradient is then null): scoring happens there.</summary>
    public IDeviceScoring? OnDevice { get; init; }
    public float[][]? HessianDiag { get; init; }
    /// <summary>A streamed run's gradient sums at its per-tensor top entries (the sums themselves were let go).</summary>
    public IReadOnlyDictionary<Ranking.ScoredIndex, float>? CapturedGradients { get; init; }
    public ActivationStats? Activations { get; init; }
    /// <summary>Calibration batches left out by --skip-nonfinite, with the reason.</summary>
    public IReadOnlyList<string> SkippedBatches { get; init; } = [];
    /// <summary>Seconds of the calibration forward+backward loop and its useful matrix FLOPs (0 for forward-only metrics).</summary>
    public double ForwardBackwardSeconds { get; init; }
    public double ForwardBackwardFlops { get; init; }
    /// <summary>A layer-major pass's seconds per stage (load_weights, forward_blocks, head, backward_blocks, embedding); null in memory.</summary>
    public IReadOnlyDictionary<string, double>? StageSeconds { get; init; }
    /// <summary>How a layer-major backward got its activations (kept in memory or a scratch file, or recomputed and why).</summary>
    public string? BackwardActivations { get; init; }
}
