using Cwa.Core.Models;

namespace Cwa.Core.Sensitivity;

/// <summary>Everything a score function may read for one tensor; fields a metric does not need stay null.</summary>
public sealed class TensorScoreInput
{
    public required ParameterSpec Spec { get; init; }
    public required float[] Weights { get; init; }
    /// <summary>Summed gradient G over the calibration batches.</summary>
    public float[]? Gradient { get; init; }
    /// <summary>Sum over batches of g_b^2 (empirical Fisher diagonal).</summary>
    public float[]? FisherSum { get; init; }
    /// <summary>Hutchinson estimate of the Hessian diagonal.</summary>
    public float[]? HessianDiag { get; init; }
    /// <summary>Per input column: ||X_j||_2 over calibration tokens.</summary>
    public float[]? InputNorms { get; init; }
    /// <summary>Per input column: max |X_j| over calibration tokens.</summary>
    public float[]? InputMaxAbs { get; init; }
}
