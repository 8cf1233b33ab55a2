namespace Cwa.Tests.EndToEnd;

/// <summary>Every user-facing failure: one line on stderr naming the problem, exit 2 for bad input.</summary>
public class CliErrorTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private (int Code, string Err) Analyze(params string[] extra)
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run(["analyze", "--quiet", "--out-dir", outDir.File("o"), "--max-samples", "4", "--max-length", "32", .. extra]);
        return (code, err);
    }

    [Theory]
    [InlineData("--metric", "snip", "unknown metric 'snip'")]
    [InlineData("--mode", "topmost", "unknown mode 'topmost'")]
    [InlineData("--perturb", "melt", "unknown perturbation 'melt'")]
    [InlineData("--controls", "random", "unknown control 'random'")]
    [InlineData("--topk", "100000", "larger than the largest scored tensor")]
    [InlineData("--dtype", "int4", "unknown dtype 'int4'")]
    [InlineData("--device", "tpu", "unknown device 'tpu'")]
    [InlineData("--grad-reduction", "max", "unknown value 'max'")]
    public void BadOptionsExitWithTwoAndOneLine(string option, string value, string expected)
    {
        var (code, err) = Analyze("--model", tiny.Model, option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void CudaWithoutAGpuFailsBeforeLoadingAndAutoFallsBackToTheCpu()
    {
        // On a GPU host with cuBLAS this is not the situation under test.
        if (Cwa.Cuda.DeviceBackendFactory.Cuda(null).Unavailable() == null) return;
        var (code, err) = Analyze("--model", "/nonexistent/model", "--device", "cuda");
        Assert.Equal(2, code);
        Assert.StartsWith("error: --device cuda:", err);
        Assert.Single(err.Trim().Split('\n'));
        using var outDir = new TempDir();
        var (ok, stdout, stderr) = Cli.Run(["analyze", "--model", tiny.Model, "--device", "auto", "--out-dir", outDir.Path, "--max-samples", "4", "--max-length", "16", "--save-plots", "false"]);
        Assert.True(ok == 0, stderr);
        Assert.Contains("no usable GPU, running on the CPU", stdout + stderr);
    }

    [Fact]
    public void MissingModelFolderNamesIt()
    {
        var (code, err) = Analyze("--model", "/nonexistent/model");
        Assert.Equal(2, code);
        Assert.Contains("model folder not found: /nonexistent/model", err);
    }

    [Fact]
    public void OutDirThatIsAFileIsRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("f"), "x");
        var (code, _, err) = Cli.Run("analyze", "--quiet", "--model", tiny.Model, "--out-dir", dir.File("f"));
        Assert.Equal(2, code);
        Assert.Contains("is a file", err);
    }

    [Fact]
    public void EmptyAndMissingDataFilesAreRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("empty.txt"), "\n\n");
        Assert.Contains("contains no texts", Analyze("--model", tiny.Model, "--data-file", dir.File("empty.txt")).Err);
        Assert.Contains("data file not found", Analyze("--model", tiny.Model, "--data-file", dir.File("nope.jsonl")).Err);
        File.WriteAllText(dir.File("bad.jsonl"), "{\"text\": \"fine\"}\n{\"text\": 5}\n");
        var (code, err) = Analyze("--model", tiny.Model, "--data-file", dir.File("bad.jsonl"));
        Assert.Equal(2, code);
        Assert.Contains("bad.jsonl:2: field 'text' is a number, not a string", err);
    }

    [Fact]
    public void UsageErrorsExitWithTwo()
    {
        var (code, _, err) = Cli.Run("analyze", "--no-such-flag");
        Assert.Equal(2, code);
        Assert.Contains("--no-such-flag", err);
        Assert.Equal(2, Cli.Run("frobnicate").Code);
        Assert.Equal(0, Cli.Run("--help").Code);
    }

    [Fact]
    public void MissingTokenizerAndUnsupportedArchitectureAreClear()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(tiny.Model)) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        File.Delete(dir.File("tokenizer.json"));
        var (code, err) = Analyze("--model", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("no tokenizer.json or tokenizer.model found", err);
        File.WriteAllText(dir.File("config.json"), File.ReadAllText(dir.File("config.json")).Replace("\"llama\"", "\"gpt2\""));
        Assert.Contains("model_type 'gpt2' is not supported (supported: llama, mistral, qwen2)", Analyze("--model", dir.Path).Err);
        File.WriteAllText(dir.File("config.json"), "{ broken");
        Assert.Contains("malformed JSON", Analyze("--model", dir.Path).Err);
    }
}
