namespace Cwa.Tests.EndToEnd;

/// <summary>Every user-facing failure: one line on stderr naming the problem, exit 2 for bad input.</summary>
public class CliErrorTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private (int Code, string Err) Analyze(params string[] extra)
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run(["analyze", "--quiet", "--out-dir", outDir.File("o"), "--max-samples", "4", "--max-length", "32", .. extra]);
        // A refused run leaves no out dir behind, not even an empty one.
        if (code != 0) Assert.Empty(Directory.EnumerateDirectories(outDir.Path, "*", new EnumerationOptions { AttributesToSkip = 0 }));
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
    [InlineData("--perturb-prob", "2", "--perturb-prob must be between 0 and 1 (got 2)")]
    [InlineData("--perturb-prob", "NaN", "--perturb-prob must be between 0 and 1 (got NaN)")]
    [InlineData("--perturb-scale", "Infinity", "--perturb-scale must be a finite number")]
    [InlineData("--perturb-scale", "-NaN", "--perturb-scale must be a finite number")]
    [InlineData("--bit", "3", "--bit only applies to --perturb bit_flip")]
    [InlineData("--k-sweep", "1,100000", "--k-sweep 100000 is larger than the largest scored tensor")]
    public void BadOptionsExitWithTwoAndOneLine(string option, string value, string expected)
    {
        var (code, err) = Analyze("--model", tiny.Model, option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Theory]
    [InlineData(new[] { "--device-memory", "lots" }, "--device-memory: 'lots' is not a size")]
    [InlineData(new[] { "--device-memory", "-5G" }, "--device-memory: '-5G' is not a size")]
    [InlineData(new[] { "--preset", "gpt-5" }, "unknown preset 'gpt-5'")]
    [InlineData(new[] { "--preset", "tiny", "--model", "somewhere" }, "--preset and --model: give one")]
    public void InspectRefusesBadPlansInOneLine(string[] args, string expected)
    {
        var (code, _, err) = Cli.Run(["inspect", .. args]);
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

    [Theory]
    [InlineData("bit_flip", "--bit", "40", "--bit 40 is outside the 32-bit F32 representation")]
    [InlineData("gauss_noise", "--perturb-scale", "-1", "--perturb-scale must be a non-negative sigma")]
    [InlineData("quantize", "--quant-bits", "5", "--quant-bits must be one of 8, 4, 3, 2 (got 5)")]
    [InlineData("quantize", "--quant-group", "0", "--quant-group must be at least 1 (got 0)")]
    [InlineData("zero", "--quantize-all-but-top", "true", "--quantize-all-but-top only applies to --perturb quantize")]
    public void PerturbationOptionsAreCheckedAgainstTheModelBeforeLoading(string kind, string option, string value, string expected)
    {
        var (code, err) = Analyze("--model", tiny.Model, "--perturb", kind, option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
    }

    [Theory]
    [InlineData("--dump-top 0 (every weight) needs --dump-tensors", "--dump-scores", "parquet", "--dump-top", "0")]
    [InlineData("--perturb-prob below 1 would quantise different subsets", "--perturb", "quantize", "--quantize-all-but-top", "--perturb-prob", "0.5")]
    public void CombinationsThatCannotMeanWhatTheySayAreRefused(string expected, params string[] args)
    {
        var (code, err) = Analyze(["--model", tiny.Model, .. args]);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
    }

    [Fact]
    public void PerturbationWithoutUsableHeldOutTextIsRefusedBeforeLoading()
    {
        using var dir = new TempDir();
        var (code, err) = Analyze("--model", tiny.Model, "--eval-file", dir.File("held-out.txt"), "--perturb", "zero");
        Assert.Equal(2, code);
        Assert.Contains("held-out.txt: data file not found", err);
    }

    [Fact]
    public void StabilityCheckNeedsTwoTextsAndSaysSoBeforeTheGradients()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("one.txt"), "just one calibration text here\n");
        var (code, err) = Analyze("--model", tiny.Model, "--data-file", dir.File("one.txt"), "--eval-file", dir.File("one.txt"), "--stability-check");
        Assert.Equal(2, code);
        Assert.Contains("--stability-check needs at least 2 calibration texts", err);
    }

    [Theory]
    [InlineData(new[] { "create-test-model", "--out", "" }, "--out must not be empty")]
    [InlineData(new[] { "compare", "CONFIG", "CONFIG" }, "not a top_weights.csv (its header is not the one cwa writes)")]
    [InlineData(new[] { "eval", "--batch-size", "0" }, "--batch-size must be at least 1 (got 0)")]
    [InlineData(new[] { "eval", "--max-length", "1" }, "--max-length must be at least 2 (got 1)")]
    public void OtherCommandsRefuseBadInputInOneLine(string[] args, string expected)
    {
        var (code, _, err) = Cli.Run(args.Select(a => a == "CONFIG" ? Path.Combine(tiny.Model, "config.json") : a).ToArray());
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("unexpected", err);
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
