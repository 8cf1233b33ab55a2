namespace Cwa.Core.Reporting;

/// <summary>One tensor's mean score placed at (block, component) for the layer comparison and heatmap plots.</summary>
public sealed record TensorScoreSummary(int Block, string Component, double Mean, double Max);

/// <summary>Delta perplexity of one perturbed set; Low/High bound a 95% interval (equal to Mean for a single run).</summary>
public sealed record PerturbationEffect(string Label, double Mean, double Low, double High);

/// <summary>Delta perplexity as a function of k for one selection (top_k, random_k, bottom_k).</summary>
public sealed record DoseResponseSeries(string Label, int[] K, double[] Delta)
{
    /// <summary>95% band (controls with several draws); null for a single run.</summary>
    public double[]? Low { get; init; }
    public double[]? High { get; init; }
}
