using System.Numerics.Tensors;

namespace Cwa.Core.Sensitivity;

/// <summary>
/// Per-weight scores (DESIGN.md §3), vectorised. Curvature-based scores use |h| because a Hutchinson estimate of a
/// small diagonal entry can come out negative; ranking by curvature magnitude is what "sensitive" means there.
/// act_outlier scores |W_ij| * max|X_j|: the weight times the largest activation it ever multiplies, which is
/// what makes super weights (a large weight on an outlier channel) stand out.
/// </summary>
public static class ScoreFunctions
{
    public static void Compute(SensitivityMetric metric, TensorScoreInput input, Span<float> scores, ObdCurvature curvature = ObdCurvature.Fisher)
    {
        var w = input.Weights.AsSpan();
        switch (metric)
        {
            case SensitivityMetric.GradXWeight:
                TensorPrimitives.Multiply(Need(input.Gradient, "gradient", input), w, scores);
                TensorPrimitives.Abs(scores, scores);
                break;
            case SensitivityMetric.GradSquared:
                var g = Need(input.Gradient, "gradient", input);
                TensorPrimitives.Multiply(g, g, scores);
                break;
            case SensitivityMetric.Fisher:
                Need(input.FisherSum, "Fisher sum", input).CopyTo(scores);
                break;
            case SensitivityMetric.HutchinsonDiag:
                TensorPrimitives.Abs(Need(input.HessianDiag, "Hessian diagonal", input), scores);
                break;
            case SensitivityMetric.Obd:
                var h = curvature == ObdCurvature.Fisher ? Need(input.FisherSum, "Fisher sum", input) : Need(input.HessianDiag, "Hessian diagonal", input);
                TensorPrimitives.Abs(h, scores);
                TensorPrimitives.Multiply(scores, w, scores);
                TensorPrimitives.Multiply(scores, w, scores);
                TensorPrimitives.Multiply(scores, 0.5f, scores);
                break;
            case SensitivityMetric.Magnitude:
                TensorPrimitives.Abs(w, scores);
                break;
            case SensitivityMetric.Wanda:
                ScaleColumns(w, Need(input.InputNorms, "input norms", input), input.Spec.Cols, scores);
                break;
            case SensitivityMetric.ActOutlier:
                ScaleColumns(w, Need(input.InputMaxAbs, "input maxima", input), input.Spec.Cols, scores);
                break;
        }
    }

    /// <summary>scores[i, j] = |W[i, j]| * column[j] for a row-major [out, in] matrix.</summary>
    private static void ScaleColumns(ReadOnlySpan<float> w, ReadOnlySpan<float> column, int cols, Span<float> scores)
    {
        if (column.Length != cols) throw new CwaException($"column statistics have {column.Length} entries for a tensor with {cols} columns");
        for (int r = 0; r < w.Length / cols; r++)
        {
            var dst = scores.Slice(r * cols, cols);
            TensorPrimitives.Abs(w.Slice(r * cols, cols), dst);
            TensorPrimitives.Multiply(dst, column, dst);
        }
    }

    private static ReadOnlySpan<float> Need(float[]? data, string what, TensorScoreInput input) =>
        data ?? throw new CwaException($"{input.Spec.Name}: the {what} needed by this metric was not computed");
}
