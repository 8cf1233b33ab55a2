using System.Buffers.Binary;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cwa.Core;
using Cwa.Core.Export;
using Cwa.Core.Models;
using Cwa.Core.Reporting;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Export;

public class ExportTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private string AnalyzeOnce(TempDir dir)
    {
        string run = dir.File("run");
        var (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", run, "--quiet", "--save-plots", "false", "--max-samples", "8", "--max-length", "32", "--topk", "6");
        Assert.True(code == 0, err);
        return run;
    }

    [Fact]
    public void GgufNamesFollowLlamaCppsConverter()
    {
        Assert.Equal("token_embd.weight", GgufNames.Of("model.embed_tokens.weight"));
        Assert.Equal("output.weight", GgufNames.Of("lm_head.weight"));
        Assert.Equal("blk.11.ffn_down.weight", GgufNames.Of("model.layers.11.mlp.down_proj.weight"));
        Assert.Equal("blk.0.attn_output.weight", GgufNames.Of("model.layers.0.self_attn.o_proj.weight"));
        Assert.Equal("blk.3.attn_q.bias", GgufNames.Of("model.layers.3.self_attn.q_proj.bias"));
        Assert.Equal("blk.2.ffn_norm.weight", GgufNames.Of("model.layers.2.post_attention_layernorm.weight"));
        Assert.Null(GgufNames.Of("model.layers.2.mlp.weird.weight"));
    }

    [Fact]
    public void ThePlanKeepsTheDensestTensorsWithinTheBudget()
    {
        var tensors = new List<TensorMass> { new("a", 100, 10), new("b", 50, 20), new("c", 800, 40), new("d", 50, 1) };
        var plan = ExportPlan.Of(tensors, 0.2); // budget 200 weights
        Assert.Equal(["b", "a", "d"], plan.Kept.Select(t => t.Tensor)); // c (density 0.05) does not fit
        Assert.Equal(200.0 / 1000, plan.KeptWeightShare, 12);
        Assert.Equal(31.0 / 71, plan.KeptScoreShare, 12);
        Assert.Throws<InputException>(() => ExportPlan.Of(tensors, 0));
        Assert.Throws<InputException>(() => ExportPlan.Of(tensors, 1.5));
    }

    [Fact]
    public void TheMaskRoundTripsTheCriticalWeights()
    {
        using var dir = new TempDir();
        string run = AnalyzeOnce(dir);
        var (code, _, err) = EndToEnd.Cli.Run("export", run, "--format", "mask", "--out", dir.File("mask.safetensors"), "--quiet");
        Assert.True(code == 0, err);
        var bytes = File.ReadAllBytes(dir.File("mask.safetensors"));
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, n));
        var data = bytes.AsSpan(8 + n);
        var csv = TopWeightsCsv.Read(Path.Combine(run, "top_weights.csv"));
        foreach (var g in csv.GroupBy(w => w.Parameter))
        {
            var idx = header.RootElement.GetProperty(g.Key + ".indices");
            var val = header.RootElement.GetProperty(g.Key + ".values");
            Assert.Equal("I64", idx.GetProperty("dtype").GetString());
            Assert.Equal([g.Count(), 2], idx.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()));
            int io = idx.GetProperty("data_offsets")[0].GetInt32(), vo = val.GetProperty("data_offsets")[0].GetInt32();
            var rows = g.ToList();
            for (int i = 0; i < rows.Count; i++)
            {
                Assert.Equal(rows[i].Row, BinaryPrimitives.ReadInt64LittleEndian(data[(io + 16 * i)..]));
                Assert.Equal(rows[i].Col, BinaryPrimitives.ReadInt64LittleEndian(data[(io + 16 * i + 8)..]));
                Assert.Equal(rows[i].Weight, BinaryPrimitives.ReadSingleLittleEndian(data[(vo + 4 * i)..]));
            }
        }
        Assert.Equal(2 * csv.Select(w => w.Parameter).Distinct().Count() + 1, header.RootElement.EnumerateObject().Count());
    }

    [Fact]
    public void TensorLevelFormatsNameExactlyTheKeptTensors()
    {
        using var dir = new TempDir();
        string run = AnalyzeOnce(dir);
        var plan = ExportPlan.Of(ExportPlan.Read(run), 0.3, RunExport.Candidates("llama-cpp"));
        var blocksPlan = ExportPlan.Of(ExportPlan.Read(run), 0.3, RunExport.Candidates("gptqmodel"));
        Assert.NotEmpty(plan.Kept);
        // GPTQModel and llm-compressor only name the blocks' modules, so their budget goes to those.
        Assert.All(blocksPlan.Kept, t => Assert.StartsWith("model.layers.", t.Tensor));
        var gguf = LlamaLayout.Parameters(TestModelPresets.Config("tiny", 512) with { NumLayers = 12 }).Select(s => GgufNames.Of(s.Name)).OfType<string>().ToList();

        Assert.Equal(0, EndToEnd.Cli.Run("export", run, "--format", "llama-cpp", "--keep-fraction", "0.3", "--high-type", "q6_K", "--out", dir.File("t.txt"), "--quiet").Code);
        var lines = File.ReadAllLines(dir.File("t.txt"));
        Assert.Equal(plan.Kept.Count, lines.Length);
        foreach (var (line, kept) in lines.Zip(plan.Kept))
        {
            var parts = line.Split('=');
            Assert.Equal("q6_K", parts[1]);
            // The pattern picks its own tensor and no other of a 12-layer model (blk.1 must not match blk.11).
            Assert.Equal([GgufNames.Of(kept.Tensor)!], gguf.Where(g => Regex.IsMatch(g, parts[0])));
        }

        Assert.Equal(0, EndToEnd.Cli.Run("export", run, "--format", "gptqmodel", "--keep-fraction", "0.3", "--out", dir.File("g.json"), "--quiet").Code);
        var dynamic = JsonDocument.Parse(File.ReadAllText(dir.File("g.json"))).RootElement.GetProperty("dynamic").EnumerateObject().ToList();
        var modules = blocksPlan.Kept.Select(t => t.Tensor[..^".weight".Length]).ToList();
        Assert.Equal(modules.Count, dynamic.Count);
        foreach (var (p, module) in dynamic.Zip(modules))
        {
            Assert.StartsWith("+:", p.Name);
            Assert.Matches(p.Name[2..], module);
            Assert.DoesNotMatch(p.Name[2..], module + "x");
            Assert.Equal(8, p.Value.GetProperty("bits").GetInt32());
        }
        Assert.Equal(0, EndToEnd.Cli.Run("export", run, "--format", "gptqmodel", "--high-bits", "16", "--out", dir.File("g16.json"), "--quiet").Code);
        Assert.All(JsonDocument.Parse(File.ReadAllText(dir.File("g16.json"))).RootElement.GetProperty("dynamic").EnumerateObject(), p => Assert.StartsWith("-:", p.Name));

        Assert.Equal(0, EndToEnd.Cli.Run("export", run, "--format", "llm-compressor", "--keep-fraction", "0.3", "--scheme", "W8A8", "--out", dir.File("r.yaml"), "--quiet").Code);
        var recipe = File.ReadAllLines(dir.File("r.yaml"));
        Assert.Contains("      scheme: \"W8A8\"", recipe);
        var ignored = recipe.SkipWhile(l => l.Trim() != "ignore:").Skip(1).Select(l => l.Trim().TrimStart('-').Trim().Trim('"')).ToList();
        Assert.Equal(["lm_head", .. modules], ignored);
    }

    [Theory]
    [InlineData("--format", "zip", "--format: unknown format 'zip'")]
    [InlineData("--keep-fraction", "0", "--keep-fraction must be in (0, 1]")]
    [InlineData("--high-type", "q8 0", "--high-type 'q8 0' is not a ggml type name")]
    public void BadOptionsAreInputErrors(string option, string value, string message)
    {
        using var dir = new TempDir();
        string run = AnalyzeOnce(dir);
        string[] args = option == "--format" ? ["export", run, option, value] : ["export", run, "--format", "llama-cpp", option, value, "--out", dir.File("x")];
        var (code, _, err) = EndToEnd.Cli.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(message, err);
        Assert.False(File.Exists(dir.File("x")));
    }

    [Fact]
    public void AFolderThatIsNotARunIsRefused()
    {
        using var dir = new TempDir();
        var (code, _, err) = EndToEnd.Cli.Run("export", dir.Path, "--format", "llama-cpp");
        Assert.Equal(2, code);
        Assert.Contains("not a cwa run folder (no sensitivity_stats.json)", err);
        (code, _, err) = EndToEnd.Cli.Run("export", dir.File("nope"), "--format", "mask");
        Assert.Equal(2, code);
        Assert.Contains("run folder not found", err);
        string run = AnalyzeOnce(dir);
        (code, _, err) = EndToEnd.Cli.Run("export", run, "--format", "llama-cpp", "--out", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("--out is a folder", err);
    }
}
