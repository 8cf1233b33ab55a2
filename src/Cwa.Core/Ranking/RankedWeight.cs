namespace Cwa.Core.Ranking;

/// <summary>One selected weight. Row/Col are the [out, in] coordinates of a 2-D tensor (Col = 0 for 1-D).</summary>
public readonly record struct RankedWeight(
    int TensorIndex,
    string Parameter,
    long FlatIndex,
    int Row,
    int Col,
    float Score,
    float Weight,
    float Gradient,
    int Block,
    string Component,
    string LayerGroup)
{
    /// <summary>Python project's "indices" column: "(row, col)".</summary>
    public string Indices => $"({Row}, {Col})";
}
