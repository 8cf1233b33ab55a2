using Cwa.Core.Checkpoints;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Parquet;

namespace Cwa.Tests.EndToEnd;

/// <summary>--dump-scores parquet: rows of (tensor, row, col, score, weight, gradient) read back and checked against the other outputs.</summary>
public class ParquetDumpTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private sealed record Row(string Tensor, int R, int C, float Score, float Weight, float? Gradient, int Rank, int Block);

    private static async Task<List<Row>> Read(string path)
    {
        await using var stream = File.OpenRead(path);
        var reader = await ParquetReader.CreateAsync(stream);
        var fields = reader.Schema.GetDataFields();
        Assert.Equal(["tensor", "row", "col", "score", "weight", "gradient", "rank", "block", "component"], fields.Select(f => f.Name));
        var rows = new List<Row>();
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            using var group = reader.OpenRowGroupReader(g);
            int n = (int)group.RowCount;
            var t = new string?[n];
            await group.ReadAsync(fields[0], t.AsMemory(), null, default);
            async Task<T[]> Values<T>(int i) where T : struct
            {
                var a = new T[n];
                await group.ReadAsync<T>(fields[i], a.AsMemory(), null, default);
                return a;
            }
            var gradient = new float?[n];
            await group.ReadAsync<float>(fields[5], gradient.AsMemory(), null, default);
            var (r, c, s, w, rk, b) = (await Values<int>(1), await Values<int>(2), await Values<float>(3), await Values<float>(4), await Values<int>(6), await Values<int>(7));
            for (int i = 0; i < n; i++) rows.Add(new Row(t[i]!, r[i], c[i], s[i], w[i], gradient[i], rk[i], b[i]));
        }
        await reader.DisposeAsync();
        return rows;
    }

    private string[] Args(string outDir, params string[] extra) =>
        ["analyze", "--model", tiny.Model, "--out-dir", outDir, "--quiet", "--save-plots", "false", "--max-samples", "8", "--max-length", "32", "--topk", "5", .. extra];

    [Fact]
    public async Task TopNRowsAreTheRankingsTopWithWeightsAndGradients()
    {
        using var dir = new TempDir();
        var (code, _, err) = Cli.Run(Args(dir.Path, "--dump-scores", "parquet", "--dump-top", "5"));
        Assert.True(code == 0, err);
        var rows = await Read(dir.File(ScoresParquet.FileName));
        var csv = TopWeightsCsv.Read(dir.File("top_weights.csv"));
        // Same weights, scores, values and gradients as top_weights.csv (k = N = 5 per tensor).
        Assert.Equal(csv.Count, rows.Count);
        var byKey = csv.ToDictionary(x => (x.Parameter, x.Row, x.Col));
        foreach (var row in rows)
        {
            var x = byKey[(row.Tensor, row.R, row.C)];
            Assert.Equal(x.Score, row.Score);
            Assert.Equal(x.Weight, row.Weight);
            Assert.Equal(x.Gradient, row.Gradient!.Value);
            Assert.Equal(x.Block, row.Block);
        }
        foreach (var g in rows.GroupBy(r => r.Tensor))
        {
            Assert.Equal(Enumerable.Range(1, 5), g.Select(r => r.Rank));
            Assert.True(g.Zip(g.Skip(1)).All(p => p.First.Score >= p.Second.Score));
        }
        Assert.Contains(ScoresParquet.FileName, File.ReadAllText(dir.File("experiment_manifest.json")));
    }

    [Theory]
    [InlineData("off")]
    [InlineData("on")]
    public async Task AChosenTensorIsDumpedWhole(string streaming)
    {
        using var dir = new TempDir();
        const string name = "model.layers.1.mlp.down_proj.weight";
        var (code, _, err) = Cli.Run(Args(dir.Path, "--dump-scores", "parquet,safetensors", "--dump-top", "0", "--dump-tensors", "layers.1.mlp.down_proj", "--streaming", streaming));
        Assert.True(code == 0, err);
        var rows = await Read(dir.File(ScoresParquet.FileName));
        Assert.All(rows, r => Assert.Equal(name, r.Tensor));
        using var dump = SafeTensorsFile.Open(dir.File("scores.safetensors"));
        var scores = new float[dump.Info(name).ElementCount];
        dump.Read(name, scores);
        Assert.Equal(scores.Length, rows.Count);
        int cols = 176;
        foreach (var r in rows) Assert.Equal(scores[r.R * cols + r.C], r.Score);
        Assert.Equal(scores.Length, rows.Select(r => (r.R, r.C)).Distinct().Count());
    }

    [Fact]
    public async Task MagnitudeHasNoGradientAndBadDumpOptionsAreInputErrors()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Cli.Run(Args(dir.Path, "--metric", "magnitude", "--dump-scores", "parquet", "--dump-top", "3")).Code);
        Assert.All(await Read(dir.File(ScoresParquet.FileName)), r => Assert.Null(r.Gradient));

        using var other = new TempDir();
        foreach (var (args, message) in new[]
                 {
                     (new[] { "--dump-tensors", "layers.1.mlp.down_proj" }, "--dump-top and --dump-tensors apply to --dump-scores parquet"),
                     (["--dump-scores", "csv"], "--dump-scores: unknown format 'csv' (valid: safetensors, parquet)"),
                     (["--dump-scores", "parquet", "--dump-tensors", "layers.1.mlp.sideways"], "--dump-tensors: 'layers.1.mlp.sideways' is not a scored tensor"),
                     (["--dump-scores", "parquet", "--dump-top", "-1"], "--dump-top must be 0 (every weight) or more"),
                 })
        {
            var (code, _, err) = Cli.Run(Args(other.File("out"), args));
            Assert.Equal(2, code);
            Assert.Contains(message, err);
            Assert.False(Directory.Exists(other.File("out")));
        }
    }
}
