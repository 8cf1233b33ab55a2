namespace Cwa.Core.Sensitivity;

public enum SensitivityMetric { GradXWeight, GradSquared, Fisher, HutchinsonDiag, Obd, Magnitude, Wanda, ActOutlier }

public enum ObdCurvature { Fisher, Hutchinson }

/// <summary>Names (as on the command line and in file names) and what each metric needs from a run.</summary>
public static class SensitivityMetrics
{
    public static readonly string[] Names = ["grad_x_weight", "grad_squared", "fisher", "hutchinson_diag", "obd", "magnitude", "wanda", "act_outlier"];

    public static SensitivityMetric Parse(string name) => Choice.Parse<SensitivityMetric>(Names, name, "--metric", "metric");

    public static string Name(this SensitivityMetric m) => Names[(int)m];

    public static ObdCurvature ParseCurvature(string name) => Choice.Parse<ObdCurvature>(["fisher", "hutchinson"], name, "--obd-curvature", "value");

    /// <summary>Summed gradient G over the calibration set.</summary>
    public static bool NeedsGradient(this SensitivityMetric m) => m is SensitivityMetric.GradXWeight or SensitivityMetric.GradSquared;

    /// <summary>Per-batch gradients g_b (for the empirical Fisher sum of g_b^2).</summary>
    public static bool NeedsFisher(this SensitivityMetric m, ObdCurvature c) => m == SensitivityMetric.Fisher || (m == SensitivityMetric.Obd && c == ObdCurvature.Fisher);

    public static bool NeedsHessian(this SensitivityMetric m, ObdCurvature c) => m == SensitivityMetric.HutchinsonDiag || (m == SensitivityMetric.Obd && c == ObdCurvature.Hutchinson);

    /// <summary>Forward-only statistics of layer inputs (Wanda norms, act_outlier maxima).</summary>
    public static bool NeedsActivations(this SensitivityMetric m) => m is SensitivityMetric.Wanda or SensitivityMetric.ActOutlier;
}
