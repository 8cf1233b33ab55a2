using Cwa.Core;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;
using Cwa.Cuda;
using Cwa.Cuda.Engine;
using Cwa.Cuda.Gemm;
using Cwa.Cuda.Kernels;
using Cwa.Tests.Engine;
using ILGPU.Runtime;

namespace Cwa.Tests.Cuda;

/// <summary>Scores summarised on the device equal what the host computes from the full score array.</summary>
public sealed class DeviceScoringTests : AcceleratorTest
{
    /// <summary>A tiny model with biases on the device path (CPU accelerator), its gradient of one padded batch on the device.</summary>
    private static (ModelWeights<float> Weights, CudaBackend Backend) BackendWithGradients(ulong seed)
    {
        var w = ModelWeights<float>.Random(TinyModels.Config(bias: true), seed, std: 0.3);
        var device = Cwa.Cuda.DeviceContext.CreateCpu();
        var dev = new CudaBackend(device, new FallbackGemm(device.Accelerator), w, StorageFormat.F32);
        dev.ForwardBackward(TinyModels.Padded(), 1);
        return (w, dev);
    }

    private static ScoreSummary OnHost(ParameterSpec spec, int t, float[] g, float[] w, SensitivityMetric metric, int k)
    {
        var s = new float[g.Length];
        ScoreFunctions.Compute(metric, new TensorScoreInput { Spec = spec, Weights = w, Gradient = g }, s);
        var (stats, sq) = TensorStatsCalculator.Compute(spec, s.ToArray(), s.Length, 2);
        var h = new LogHistogramBuilder();
        h.Add(s, s.Length, 2);
        var top = new TopKCollector(k);
        top.Add(t, s);
        var bottom = new TopKCollector(k, largest: false);
        bottom.Add(t, s);
        return new ScoreSummary(stats, sq, h, top.Result(), bottom.Result());
    }

    private static void Same(ScoreSummary e, ScoreSummary a)
    {
        var (x, y) = (e.Stats, a.Stats);
        Assert.Equal((x.Name, x.NumWeights, x.Min, x.Max, x.NumZeros), (y.Name, y.NumWeights, y.Min, y.Max, y.NumZeros));
        Assert.Equal((x.P50, x.P95, x.P99, x.P999, x.Q25, x.Q75), (y.P50, y.P95, y.P99, y.P999, y.Q25, y.Q75));
        Assert.Equal(x.Skewness, y.Skewness, 1e-9 * Math.Abs(x.Skewness) + 1e-12);
        Assert.Equal(x.ExcessKurtosis, y.ExcessKurtosis, 1e-9 * Math.Abs(x.ExcessKurtosis) + 1e-12);
        Assert.Equal(x.Mean, y.Mean, 1e-12 * Math.Abs(x.Mean) + 1e-30);
        Assert.Equal(x.Std, y.Std, 1e-9 * x.Std + 1e-30);
        Assert.Equal(x.Sum, y.Sum, 1e-12 * Math.Abs(x.Sum) + 1e-30);
        Assert.Equal(e.SumSquares, a.SumSquares, 1e-12 * e.SumSquares + 1e-30);
        Assert.Equal(e.Top, a.Top);
        Assert.Equal(e.Bottom, a.Bottom);
        var (he, ha) = (e.Histogram.Build(), a.Histogram.Build());
        Assert.Equal((he.Zeros, he.Negatives, he.Counts.Sum()), (ha.Zeros, ha.Negatives, ha.Counts.Sum()));
        Assert.Equal(he.Edges, ha.Edges);
        // log10 may round differently by an ulp at a bin edge: at most a handful of values move to a neighbour.
        Assert.True(he.Counts.Zip(ha.Counts).Sum(p => Math.Abs(p.First - p.Second)) <= 4, "histograms differ");
    }

    [Theory]
    [InlineData(StorageFormat.F32, 7)]
    [InlineData(StorageFormat.Bf16, 50)]
    public void HeavyTiesZerosAndHalfWeightsGiveTheHostsSummary(StorageFormat format, int k)
    {
        int rows = 70, cols = 41, n = rows * cols;
        var spec = new ParameterSpec("t", [rows, cols], ParameterRole.UpProj, 0, "mlp.up_proj");
        var r = new SplitMix64(5);
        // Scores from a handful of values: long runs of exact ties and zeros around every threshold.
        float[] levels = [0f, 0f, 0f, 1f, 2f, 2f, 3f, 0.5f, -2f, 1e-20f];
        var g = Enumerable.Range(0, n).Select(_ => levels[r.NextLong(levels.Length)]).ToArray();
        var w = Enumerable.Range(0, n).Select(_ => format == StorageFormat.F32 ? (float)r.NextGaussian() : 1f).ToArray();
        var gd = new DeviceTensor(Run.Ops.Accelerator, n, StorageFormat.F32);
        var wd = new DeviceTensor(Run.Ops.Accelerator, n, format);
        gd.Floats.CopyFromCPU(g.AsSpan());
        if (format == StorageFormat.F32) wd.Floats.CopyFromCPU(w.AsSpan());
        else wd.Halves.CopyFromCPU(w.Select(v => HalfBits.FromFloat(v, (int)format)).ToArray().AsSpan());
        using var scorer = new DeviceScorer(Run.Ops.Accelerator, Run.Ops.RowGroupSize);
        foreach (var metric in new[] { SensitivityMetric.GradXWeight, SensitivityMetric.GradSquared })
        {
            int m = metric == SensitivityMetric.GradSquared ? ScoreKernels.GradSquared : ScoreKernels.GradXWeight;
            Same(OnHost(spec, 3, g, w, metric, k), scorer.Score(spec, 3, gd, wd, m, k));
        }
        // k larger than the tensor: everything, in order.
        var all = scorer.Score(spec, 3, gd, wd, ScoreKernels.GradXWeight, n + 5);
        Assert.Equal(n, all.Top.Count);
        Assert.Equal(OnHost(spec, 3, g, w, SensitivityMetric.GradXWeight, n).Top, all.Top);
        gd.Dispose();
        wd.Dispose();
    }

    [Fact]
    public void ANonFiniteGradientNamesTheTensorAndTheFirstIndex()
    {
        var spec = new ParameterSpec("model.layers.0.mlp.up_proj.weight", [4, 8], ParameterRole.UpProj, 0, "mlp.up_proj");
        var g = new float[32];
        g[19] = float.NaN;
        g[27] = float.PositiveInfinity;
        using var gd = new DeviceTensor(Run.Ops.Accelerator, 32, StorageFormat.F32);
        using var wd = new DeviceTensor(Run.Ops.Accelerator, 32, StorageFormat.F32);
        gd.Floats.CopyFromCPU(g.AsSpan());
        wd.Floats.MemSetToZero();
        using var scorer = new DeviceScorer(Run.Ops.Accelerator, Run.Ops.RowGroupSize);
        var e = Assert.Throws<CwaException>(() => scorer.Score(spec, 0, gd, wd, ScoreKernels.GradXWeight, 3));
        Assert.Contains("model.layers.0.mlp.up_proj.weight is not finite at flat index 19", e.Message);
    }

    [Fact]
    public void TheBackendScoresEveryTensorOfARealGradientAsTheHostDoes()
    {
        var (w, dev) = BackendWithGradients(12);
        using var _ = dev;
        for (int t = 0; t < w.Count; t++)
        {
            var g = new float[w[t].Length];
            dev.ReadGradient(t, g);
            Same(OnHost(w.Specs[t], t, g, w[t], SensitivityMetric.GradXWeight, 9), dev.Score(t, SensitivityMetric.GradXWeight, 9));
            long[] at = [0, g.Length - 1, g.Length / 2];
            var values = new float[3];
            dev.ReadGradientAt(t, at, values);
            Assert.Equal(at.Select(i => g[i]), values);
        }
    }

    [Fact]
    public void ModelWideQuantilesFromTheDeviceAreTheExactValuesOfEveryScore()
    {
        var (w, dev) = BackendWithGradients(13);
        using var _ = dev;
        var modelWide = new RadixQuantiles();
        var all = new List<float>();
        for (int t = 0; t < w.Count; t++)
        {
            dev.Score(t, SensitivityMetric.GradXWeight, 3, modelWide);
            var g = new float[w[t].Length];
            dev.ReadGradient(t, g);
            var s = new float[g.Length];
            ScoreFunctions.Compute(SensitivityMetric.GradXWeight, new TensorScoreInput { Spec = w.Specs[t], Weights = w[t], Gradient = g }, s);
            all.AddRange(s);
        }
        double[] ps = [0.5, 0.95, 0.99, 0.999];
        var exact = modelWide.Refine(ps);
        for (int t = 0; t < w.Count; t++) dev.Refine(t, SensitivityMetric.GradXWeight, exact);
        var sorted = all.Order().ToArray();
        Assert.Equal(sorted.Length, modelWide.Total);
        foreach (double p in ps)
            Assert.Equal(sorted[(int)Math.Ceiling(p * sorted.Length) - 1], exact.Quantile(p));
    }
}
