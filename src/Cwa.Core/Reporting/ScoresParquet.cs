using Cwa.Core.Ranking;
using Parquet;
using Parquet.Schema;

namespace Cwa.Core.Reporting;

/// <summary>
/// scores.parquet (--dump-scores parquet): one row per dumped weight with tensor, row, col, score, weight, gradient
/// (null for metrics without one), rank within its tensor, block and component; one row group per tensor, so pandas
/// or polars read it directly and a tensor's rows can be read alone. Written to a temp file and renamed.
/// </summary>
public static class ScoresParquet
{
    public const string FileName = "scores.parquet";

    private static readonly DataField<string> Tensor = new("tensor");
    private static readonly DataField<int> Row = new("row");
    private static readonly DataField<int> Col = new("col");
    private static readonly DataField<float> Score = new("score");
    private static readonly DataField<float> Weight = new("weight");
    private static readonly DataField<float?> Gradient = new("gradient");
    private static readonly DataField<int> Rank = new("rank");
    private static readonly DataField<int> Block = new("block");
    private static readonly DataField<string> Component = new("component");
    private static readonly ParquetSchema Schema = new(Tensor, Row, Col, Score, Weight, Gradient, Rank, Block, Component);

    /// <param name="groups">per tensor, its rows best first (produced lazily, one tensor at a time)</param>
    public static void Write(string path, IEnumerable<IReadOnlyList<RankedWeight>> groups) => AtomicFile.Write(path, stream =>
    {
        var writer = ParquetWriter.CreateAsync(Schema, stream).GetAwaiter().GetResult();
        try
        {
            foreach (var rows in groups)
            {
                if (rows.Count == 0) continue;
                using var g = writer.CreateRowGroup();
                void Strings(DataField<string> field, Func<RankedWeight, string> value) => Wait(g.WriteAsync(field, rows.Select(value).ToArray(), null));
                void Values<T>(DataField<T> field, T[] values) where T : struct => Wait(g.WriteAsync<T>(field, values, null, null, default));
                Strings(Tensor, r => r.Parameter);
                Values(Row, rows.Select(r => r.Row).ToArray());
                Values(Col, rows.Select(r => r.Col).ToArray());
                Values(Score, rows.Select(r => r.Score).ToArray());
                Values(Weight, rows.Select(r => r.Weight).ToArray());
                Wait(g.WriteAsync<float>(Gradient, rows.Select(r => float.IsNaN(r.Gradient) ? null : (float?)r.Gradient).ToArray(), null, null, default));
                Values(Rank, Enumerable.Range(1, rows.Count).ToArray());
                Values(Block, rows.Select(r => r.Block).ToArray());
                Strings(Component, r => r.Component);
            }
        }
        finally
        {
            writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    });

    private static void Wait(Task t) => t.GetAwaiter().GetResult();
    private static void Wait(ValueTask t) => t.AsTask().GetAwaiter().GetResult();
}
