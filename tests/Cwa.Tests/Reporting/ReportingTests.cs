using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Ranking;
using Cwa.Core.Reporting;
using Cwa.Core.Sensitivity;

namespace Cwa.Tests.Reporting;

public class ReportingTests
{
    [Fact]
    public void TopWeightsCsvRoundTripsExactly()
    {
        using var dir = new TempDir();
        var rows = new List<RankedWeight>
        {
            new(3, "model.layers.1.mlp.down_proj.weight", 2427L * 0 + 12, 0, 12, 0.1f + 1e-9f, -0.0123456789f, 3.3e-7f, 1, "mlp.down_proj", "mlp"),
            new(0, "model.embed_tokens.weight", 5, 1, 1, 1e-30f, float.Epsilon, -2f, -1, "embed_tokens", "embedding"),
            new(7, "lm_head.weight", 9, 2, 3, 5.5f, 1f, float.NaN, -1, "lm_head", "lm_head"),
        };
        TopWeightsCsv.Write(dir.File("t.csv"), rows);
        var lines = File.ReadAllLines(dir.File("t.csv"));
        Assert.Equal(TopWeightsCsv.Header, lines[0]);
        Assert.StartsWith("lm_head.weight,\"(2, 3)\",5.5,lm_head,1,", lines[1]);
        var back = TopWeightsCsv.Read(dir.File("t.csv"));
        var expected = rows.OrderByDescending(r => r.Score).ToList();
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(expected[i].Parameter, back[i].Parameter);
            Assert.Equal((expected[i].Row, expected[i].Col), (back[i].Row, back[i].Col));
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i].Score), BitConverter.SingleToInt32Bits(back[i].Score));
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i].Weight), BitConverter.SingleToInt32Bits(back[i].Weight));
            Assert.Equal(expected[i].Block, back[i].Block);
        }
        File.WriteAllText(dir.File("bad.csv"), TopWeightsCsv.Header + "\nx,\"(a, b)\",1,mlp\n");
        Assert.Contains("bad.csv:2: malformed row", Assert.Throws<InputException>(() => TopWeightsCsv.Read(dir.File("bad.csv"))).Message);
    }

    [Fact]
    public void AtomicFileNeverLeavesPartialOutput()
    {
        using var dir = new TempDir();
        string path = dir.File("out.json");
        AtomicFile.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s => { s.Write([1, 2, 3]); throw new InvalidOperationException("interrupted"); }));
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void StatsJsonKeepsNotebookLayoutAndWritesNonFiniteAsNull()
    {
        using var dir = new TempDir();
        StatsJson.WriteTensors(dir.File("s.json"), [new TensorStats("a.weight", 0, "x", 4, 1, 2, 0, double.PositiveInfinity, 1, 2, 3, 4, 1, 4)]);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir.File("s.json")));
        var a = doc.RootElement.GetProperty("a.weight");
        Assert.Equal(JsonValueKind.Null, a.GetProperty("max").ValueKind);
        Assert.Equal(4, a.GetProperty("num_weights").GetInt64());
        Assert.Equal(3, a.GetProperty("p99").GetDouble());
    }

    [Fact]
    public void HtmlReportEmbedsPlotsAndEscapesText()
    {
        using var dir = new TempDir();
        var png = Plots.PerturbationEffects(dir.File("p.png"), "t", [new PerturbationEffect("top_k", 5, 5, 5), new PerturbationEffect("random_k", 1, 0.5, 1.5)]);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png[0]).Take(4));
        Assert.True(File.Exists(png[1]));
        HtmlReport.Write(dir.File("r.html"), new HtmlReportModel
        {
            Title = "run <script>",
            Summary = [("model", "a<b")],
            TopWeights = [],
            Stats = [],
            Plots = [(png[0], "effects & controls")],
        });
        string html = File.ReadAllText(dir.File("r.html"));
        Assert.Contains("run &lt;script&gt;", html);
        Assert.Contains("a&lt;b", html);
        Assert.Contains("data:image/png;base64,", html);
        Assert.Contains("effects &amp; controls", html);
        Assert.DoesNotContain("<script>", html);
    }
}
