using Cwa.Core;
using Cwa.Core.Data;
using Parquet;
using Parquet.Schema;

namespace Cwa.Tests.Data;

public class DataTests
{
    [Fact]
    public async Task ReadsTxtJsonlAndParquet()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("a.txt"), "first line\n\n  second line  \n");
        Assert.Equal(["first line", "second line"], TextSource.Read(dir.File("a.txt")));
        File.WriteAllText(dir.File("a.jsonl"), "{\"content\": \"alpha\", \"n\": 1}\n\n{\"content\": \"beta\"}\n");
        Assert.Equal(["alpha", "beta"], TextSource.Read(dir.File("a.jsonl"), "content"));

        var field = new DataField<string>("text");
        await using (var fs = File.Create(dir.File("a.parquet")))
        {
            await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(field), fs);
            foreach (var chunk in new[] { new[] { "one", "two" }, new[] { "three" } })
            {
                using var g = writer.CreateRowGroup();
                await g.WriteAsync(field, chunk, null);
            }
        }
        Assert.Equal(["one", "two", "three"], TextSource.Read(dir.File("a.parquet")));
        var e = Assert.Throws<InputException>(() => TextSource.Read(dir.File("a.parquet"), "body"));
        Assert.Contains("no column 'body' (columns: text", e.Message);
    }

    [Theory]
    [InlineData("x.csv", "a,b", "unsupported data file type '.csv'")]
    [InlineData("x.jsonl", "{\"text\": \"ok\"}\nnot json", "x.jsonl:2: invalid JSON")]
    [InlineData("x.jsonl", "{\"body\": \"ok\"}", "x.jsonl:1: no field 'text'")]
    [InlineData("x.jsonl", "[1, 2]", "x.jsonl:1: expected a JSON object per line")]
    [InlineData("x.txt", "   \n", "contains no texts")]
    [InlineData("x.parquet", "not a parquet file", "cannot read parquet file")]
    public void BadFilesGiveOneLineNamingTheFile(string name, string content, string expected)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(name), content);
        var e = Assert.Throws<InputException>(() => TextSource.Read(dir.File(name)));
        Assert.Contains(expected, e.Message);
        Assert.Contains(name, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void BatchesArePaddedOnTheRightWithLengths()
    {
        var batches = CalibrationSet.MakeBatches([[1, 2, 3], [4, 5], [6, 7, 8, 9], [1, 1]], 3, padId: 99);
        Assert.Equal(2, batches.Count);
        var b = batches[0];
        Assert.Equal((3, 4), (b.BatchSize, b.SeqLen));
        Assert.Equal([1, 2, 3, 99, 4, 5, 99, 99, 6, 7, 8, 9], b.Tokens);
        Assert.Equal([3, 2, 4], b.Lengths);
        Assert.Equal(2 + 1 + 3, b.TargetCount);
        Assert.Equal([1, 1], batches[1].Tokens);
    }

    [Fact]
    public void ShuffleIsDeterministicAndSplitIsDisjoint()
    {
        Assert.Equal(CalibrationSet.Shuffle(50, 7), CalibrationSet.Shuffle(50, 7));
        Assert.NotEqual(CalibrationSet.Shuffle(50, 7), CalibrationSet.Shuffle(50, 8));
        Assert.Equal(Enumerable.Range(0, 50), CalibrationSet.Shuffle(50, 7).Order());
        var texts = Enumerable.Range(0, 40).Select(i => $"text {i}").ToList();
        var (calib, eval) = CalibrationSet.Split(texts, 0.2, 1);
        Assert.Equal(8, eval.Count);
        Assert.Empty(calib.Intersect(eval));
        Assert.Equal(texts.Order(), calib.Concat(eval).Order());
    }

    [Fact]
    public void BuiltInCorpusIsLargeVariedAndSplitDisjointly()
    {
        var all = BuiltInCorpus.All;
        Assert.True(all.Count >= 200, $"{all.Count} paragraphs");
        Assert.Equal(all.Count, all.Distinct().Count());
        Assert.All(all, p => Assert.InRange(p.Split(' ').Length, 40, 130));
        Assert.Empty(BuiltInCorpus.Calibration.Intersect(BuiltInCorpus.Evaluation));
        Assert.Equal(all.Count, BuiltInCorpus.Calibration.Count + BuiltInCorpus.Evaluation.Count);
        Assert.Equal(all.Count / 5, BuiltInCorpus.Evaluation.Count);
    }
}
