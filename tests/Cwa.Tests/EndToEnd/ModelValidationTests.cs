using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// config.json semantics, files that are not regular files, and broken tokenizers: each is an input error (exit 2)
/// naming the file and the key or problem, reported before any weight is read, never a hang or an internal error.
/// </summary>
public class ModelValidationTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    /// <summary>A copy of the tiny model with one change, analysed; returns the exit code and stderr.</summary>
    private (int Code, string Err) AnalyzeChanged(Action<string> change)
    {
        using var dir = new TempDir();
        string model = dir.File("m");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.EnumerateFiles(tiny.Model)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        change(model);
        var (code, _, err) = Cli.Run("analyze", "--model", model, "--out-dir", dir.File("o"), "--quiet", "--max-samples", "4", "--max-length", "16", "--save-plots", "false");
        return (code, err.Trim());
    }

    private static Action<string> Config(Action<JsonObject> edit) => model =>
    {
        string path = Path.Combine(model, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    };

    public static TheoryData<string, string> ConfigCases => new()
    {
        { "hidden_act=gelu", "config.json: hidden_act 'gelu' is not supported (supported: silu)" },
        { "num_hidden_layers=1", "config.json: num_hidden_layers is 1 but" },
        { "rope_theta=0", "config.json: 'rope_theta' must be a positive number (got 0)" },
        { "rope_theta=-5", "config.json: 'rope_theta' must be a positive number (got -5)" },
        { "rms_norm_eps=-1e-5", "config.json: 'rms_norm_eps' must be zero or positive" },
        { "rope_factor=0", "config.json: rope_scaling 'factor' must be a positive number (got 0)" },
        { "rope_factor=-2", "config.json: rope_scaling 'factor' must be a positive number (got -2)" },
        { "rope_equal_factors", "config.json: rope_scaling 'high_freq_factor' (1) must be larger than 'low_freq_factor' (1)" },
    };

    [Theory]
    [MemberData(nameof(ConfigCases))]
    public void ConfigSemanticsAreCheckedByKey(string change, string expected)
    {
        var (code, err) = AnalyzeChanged(Config(o =>
        {
            switch (change)
            {
                case "hidden_act=gelu": o["hidden_act"] = "gelu"; break;
                case "num_hidden_layers=1": o["num_hidden_layers"] = 1; break;
                case "rope_theta=0": o["rope_theta"] = 0; break;
                case "rope_theta=-5": o["rope_theta"] = -5; break;
                case "rms_norm_eps=-1e-5": o["rms_norm_eps"] = -1e-5; break;
                case "rope_factor=0": o["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 0 }; break;
                case "rope_factor=-2": o["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = -2 }; break;
                case "rope_equal_factors": o["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8, ["low_freq_factor"] = 1, ["high_freq_factor"] = 1 }; break;
            }
        }));
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n'));
    }

    [Fact]
    public void AnUndeclaredQueryBiasIsRefusedNotIgnored()
    {
        using var dir = new TempDir();
        string model = dir.File("biased");
        Assert.Equal(0, Cli.Run("create-test-model", "--preset", "tiny", "--out", model, "--quiet").Code);
        // Rewrite the model as qwen2 (q/k/v biases), then declare it a llama without attention_bias.
        var (code, _, err) = Cli.Run("analyze", "--model", QwenWithBiases(model, dir.File("q")), "--out-dir", dir.File("o"), "--quiet", "--max-samples", "2", "--max-length", "16");
        Assert.Equal(2, code);
        Assert.Contains("config.json: attention_bias is false but", err);
        Assert.Contains("_proj.bias", err);
    }

    /// <summary>A tiny model whose shards hold q/k/v biases, with a config.json that says llama without attention_bias.</summary>
    private static string QwenWithBiases(string tinyModel, string into)
    {
        var config = Cwa.Core.Checkpoints.HfConfigReader.Read(Path.Combine(tinyModel, "config.json")) with { ModelType = "qwen2", AttentionBias = true };
        var tok = Cwa.Core.Tokenization.ByteLevelBpeTrainer.Train(Cwa.Core.Data.BuiltInCorpus.All, 512);
        Cwa.Core.Models.TestModelGenerator.Write(into, config, Cwa.Core.Checkpoints.DType.F32, 1, tok.TokenizerJson, tok.TokenizerConfigJson);
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(into, "config.json")))!.AsObject();
        o["model_type"] = "llama";
        o["attention_bias"] = false;
        File.WriteAllText(Path.Combine(into, "config.json"), o.ToJsonString());
        return into;
    }

    [Fact]
    public async Task AFifoInPlaceOfConfigJsonIsRefusedWithoutHanging()
    {
        if (!OperatingSystem.IsLinux()) return;
        var run = Task.Run(() => AnalyzeChanged(model =>
        {
            File.Delete(Path.Combine(model, "config.json"));
            using var p = Process.Start("mkfifo", Path.Combine(model, "config.json"));
            p.WaitForExit();
        }));
        var (code, err) = await run.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains("config.json: is not a regular file (a FIFO)", err);
    }

    [Fact]
    public void AShardLinkedToADeviceOrReplacedByAFolderIsNamed()
    {
        if (!OperatingSystem.IsLinux()) return;
        const string shard = "model-00001-of-00002.safetensors";
        var (code, err) = AnalyzeChanged(model =>
        {
            File.Delete(Path.Combine(model, shard));
            File.CreateSymbolicLink(Path.Combine(model, shard), "/dev/null");
        });
        Assert.Equal(2, code);
        Assert.Contains($"{shard}: is not a regular file (a character device)", err);
        (code, err) = AnalyzeChanged(model =>
        {
            File.Delete(Path.Combine(model, shard));
            Directory.CreateDirectory(Path.Combine(model, shard));
        });
        Assert.Equal(2, code);
        Assert.Contains($"shard '{shard}' listed in weight_map is a directory", err);
    }

    public static TheoryData<string, string> TokenizerCases => new()
    {
        { "empty-vocab", "tokenizer.json: " },
        { "number-merge", "tokenizer.json: " },
        { "bad-regex", "tokenizer.json: " },
        { "vocab-not-numbers", "tokenizer.json: " },
        { "empty-sentencepiece", "tokenizer.model: " },
    };

    [Theory]
    [MemberData(nameof(TokenizerCases))]
    public void BrokenTokenizersAreInputErrorsNamingTheFile(string fault, string expected)
    {
        var (code, err) = AnalyzeChanged(model =>
        {
            string path = Path.Combine(model, "tokenizer.json");
            if (fault == "empty-sentencepiece")
            {
                File.Delete(path);
                File.WriteAllBytes(Path.Combine(model, "tokenizer.model"), []);
                return;
            }
            var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            var m = o["model"]!.AsObject();
            switch (fault)
            {
                case "empty-vocab": m["vocab"] = new JsonObject(); m["merges"] = new JsonArray(); o["added_tokens"] = new JsonArray(); break;
                case "number-merge": m["merges"] = new JsonArray(42, 43); break;
                case "bad-regex": o["pre_tokenizer"] = JsonNode.Parse("""{"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated","invert":false}"""); break;
                case "vocab-not-numbers": m["vocab"]!.AsObject()["a"] = "one"; break;
            }
            File.WriteAllText(path, o.ToJsonString());
        });
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("unexpected", err);
        Assert.Single(err.Split('\n'));
    }
}
