using System.Security.Cryptography;
using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Reporting;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// The out dir holds exactly one complete run: the previous one until a new one is complete, never a mix. Models
/// and foreign files are never overwritten, and concurrent runs are refused.
/// </summary>
public class OutDirTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static readonly string[] Fast = ["--quiet", "--max-samples", "6", "--max-length", "24", "--topk", "5"];

    private (int Code, string Err) Analyze(string outDir, params string[] extra)
    {
        string[] plots = extra.Contains("--save-plots") ? [] : ["--save-plots", "false"];
        var (code, _, err) = Cli.Run(["analyze", "--model", tiny.Model, "--out-dir", outDir, .. Fast, .. plots, .. extra]);
        return (code, err);
    }

    /// <summary>Relative path -> sha256 of every file below a folder.</summary>
    internal static Dictionary<string, string> Snapshot(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(dir, f), f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));

    private static void AssertNoLeftovers(string outDir)
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(outDir))!, name = Path.GetFileName(outDir);
        Assert.False(Directory.Exists(Path.Combine(parent, $".{name}.cwa-staging")), "staging folder left behind");
        Assert.False(Directory.Exists(Path.Combine(parent, $".{name}.cwa-previous")), "previous run left parked");
        if (RunDirectory.RemovesLockFiles) Assert.False(File.Exists(Path.Combine(parent, $".{name}.cwa-lock")), "lock file left behind");
        if (Directory.Exists(outDir))
            Assert.DoesNotContain(Directory.EnumerateFiles(outDir, "*", SearchOption.AllDirectories), f => f.Contains(".tmp-"));
    }

    /// <summary>The manifest lists exactly the files in the folder, with their hashes.</summary>
    internal static void AssertManifestDescribesTheFolder(string outDir)
    {
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, ExperimentManifest.FileName)));
        var listed = m.RootElement.GetProperty("output_files").EnumerateArray()
            .ToDictionary(f => f.GetProperty("path").GetString()!, f => f.GetProperty("sha256").GetString()!);
        var actual = Snapshot(outDir);
        actual.Remove(ExperimentManifest.FileName);
        Assert.Equal(actual.OrderBy(kv => kv.Key), listed.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void OutDirEqualToTheModelIsRefusedAndTheModelIsUntouched()
    {
        using var dir = new TempDir();
        string model = dir.File("m");
        Assert.Equal(0, Cli.Run("create-test-model", "--preset", "tiny", "--seed", "4", "--out", model, "--quiet").Code);
        var before = Snapshot(model);
        foreach (var outDir in new[] { model, model + "/", dir.Path })
        {
            var (code, _, err) = Cli.Run(["analyze", "--model", model, "--out-dir", outDir, .. Fast]);
            Assert.Equal(2, code);
            Assert.Contains("is the model folder (or contains it)", err);
        }
        Assert.Equal(before, Snapshot(model));
    }

    [Fact]
    public void AFolderHoldingAModelOrForeignFilesIsRefused()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Cli.Run("create-test-model", "--preset", "tiny", "--seed", "5", "--out", dir.File("other"), "--quiet").Code);
        var before = Snapshot(dir.File("other"));
        var (code, err) = Analyze(dir.File("other"));
        Assert.Equal(2, code);
        Assert.Contains("holds a model (tokenizer.json)", err);
        Assert.Equal(before, Snapshot(dir.File("other")));

        // A model folder with only its config and weights is recognised too.
        Directory.CreateDirectory(dir.File("bare"));
        File.Copy(Path.Combine(dir.File("other"), "config.json"), dir.File("bare/config.json"));
        Assert.Contains("holds a model (config.json has model_type)", Analyze(dir.File("bare")).Err);

        Directory.CreateDirectory(dir.File("notes"));
        File.WriteAllText(dir.File("notes/notes.txt"), "mine");
        (code, err) = Analyze(dir.File("notes"));
        Assert.Equal(2, code);
        Assert.Contains("holds files cwa did not write (notes.txt)", err);
        Assert.Equal("mine", File.ReadAllText(dir.File("notes/notes.txt")));

        Directory.CreateDirectory(dir.File("empty"));
        Assert.Equal(0, Analyze(dir.File("empty")).Code);
        AssertNoLeftovers(dir.File("empty"));
    }

    [Theory]
    [InlineData("", "--out-dir must not be empty")]
    [InlineData("   ", "--out-dir must not be empty")]
    public void BadOutDirNamesAreUsageErrors(string outDir, string expected)
    {
        var (code, err) = Analyze(outDir);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
    }

    [Fact]
    public void TheCurrentDirectoryIsNeverReplaced()
    {
        var e = Assert.Throws<InputException>(() => RunDirectory.Open(Environment.CurrentDirectory, null));
        Assert.Contains("is the current directory or contains it", e.Message);
        e = Assert.Throws<InputException>(() => RunDirectory.Open(Path.GetDirectoryName(Environment.CurrentDirectory)!, null));
        Assert.Contains("is the current directory or contains it", e.Message);
    }

    [Fact]
    public void ASecondRunReplacesTheFirstAsAWhole()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        var first = Analyze(outDir, "--perturb", "zero", "--controls", "random_k", "--control-seeds", "2", "--save-plots", "true");
        Assert.True(first.Code == 0, first.Err);
        Assert.True(File.Exists(Path.Combine(outDir, "perturbation_results.json")));
        Assert.Equal(0, Analyze(outDir, "--metric", "grad_squared", "--seeds", "7").Code);
        Assert.False(File.Exists(Path.Combine(outDir, "perturbation_results.json")), "the previous run's files must not survive");
        Assert.False(Directory.Exists(Path.Combine(outDir, "plots")), "the previous run's plots must not survive");
        AssertManifestDescribesTheFolder(outDir);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")));
        Assert.Equal("grad_squared", config.RootElement.GetProperty("metric").GetString());
        AssertNoLeftovers(outDir);
    }

    [Fact]
    public void AFailedRunLeavesThePreviousRunExactlyAsItWas()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        Assert.Equal(0, Analyze(outDir).Code);
        var before = Snapshot(outDir);

        // Refused by validation before anything heavy runs ...
        Assert.Equal(2, Analyze(outDir, "--perturb", "zero", "--perturb-prob", "2").Code);
        Assert.Equal(before, Snapshot(outDir));

        // ... and failing in the middle of the gradient pass, after the staging folder has been written to.
        string broken = dir.File("broken");
        BrokenModel.Write(tiny.Model, broken);
        var (code, _, err) = Cli.Run(["analyze", "--model", broken, "--out-dir", outDir, "--save-tokens", .. Fast]);
        Assert.Equal(1, code);
        Assert.Contains("non-finite loss", err);
        Assert.Equal(before, Snapshot(outDir));
        AssertNoLeftovers(outDir);
    }

    [Fact]
    public void AConcurrentRunIntoTheSameFolderIsRefused()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        using (RunDirectory.Open(outDir, null))
        {
            var (code, err) = Analyze(outDir);
            Assert.Equal(2, code);
            Assert.Contains("another cwa run is writing to this --out-dir", err);
        }
        Assert.Equal(0, Analyze(outDir).Code);
    }

    [Fact]
    public void ALockOnADeletedLockFileDoesNotKeepTheNextRunOut()
    {
        if (!RunDirectory.RemovesLockFiles) return;
        using var dir = new TempDir();
        string path = dir.File(".run.cwa-lock");
        // A process that opened the lock file just before its holder deleted it, and then won its lock.
        using var stale = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        Assert.False(RunDirectory.Deleted(stale));
        File.Delete(path);
        Assert.True(RunDirectory.Deleted(stale));
        using (RunDirectory.Open(dir.File("run"), null))
        {
            Assert.True(File.Exists(path), "the new run locks a new file at the path");
            var (code, err) = Analyze(dir.File("run"));
            Assert.Equal(2, code);
            Assert.Contains("another cwa run is writing to this --out-dir", err);
        }
        Assert.False(File.Exists(path), "the lock file is deleted when its run ends");
    }

    [Fact]
    public void RacingRunsNeverLeaveAMixedFolder()
    {
        using var dir = new TempDir();
        string outDir = dir.File("run");
        var codes = Enumerable.Range(1, 4).AsParallel().WithDegreeOfParallelism(4)
            .Select(seed => Analyze(outDir, "--seeds", seed.ToString(), "--metric", seed % 2 == 0 ? "grad_squared" : "grad_x_weight").Code).ToList();
        Assert.All(codes, c => Assert.True(c is 0 or 2, $"exit code {c}"));
        Assert.Contains(0, codes);
        AssertManifestDescribesTheFolder(outDir);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")));
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, ExperimentManifest.FileName)));
        foreach (var key in new[] { "metric", "seeds" })
            Assert.Equal(Compact(config.RootElement.GetProperty(key)), Compact(manifest.RootElement.GetProperty("config").GetProperty(key)));
        AssertNoLeftovers(outDir);
    }

    private static string Compact(JsonElement e) => JsonSerializer.Serialize(e);

    [Fact]
    public void APreviousRunParkedByAnInterruptedPublishIsPutBack()
    {
        using var dir = new TempDir();
        string parked = dir.File(".run.cwa-previous");
        Directory.CreateDirectory(parked);
        File.WriteAllText(Path.Combine(parked, "top_weights.csv"), "old");
        using (RunDirectory.Open(dir.File("run"), null)) { }
        Assert.Equal("old", File.ReadAllText(dir.File("run/top_weights.csv")));
        Assert.False(Directory.Exists(parked));
    }

    [Fact]
    public void AnUnpublishedRunLeavesNothingAndAPublishedOneFollowsALink()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("real"));
        File.WriteAllText(dir.File("real/config.json"), "{\"metric\": \"old\"}");
        File.CreateSymbolicLink(dir.File("link"), dir.File("real"));
        using (var run = RunDirectory.Open(dir.File("link"), null))
            File.WriteAllText(Path.Combine(run.Staging, "config.json"), "{\"metric\": \"abandoned\"}");
        Assert.Contains("old", File.ReadAllText(dir.File("real/config.json")));
        using (var run = RunDirectory.Open(dir.File("link"), null))
        {
            File.WriteAllText(Path.Combine(run.Staging, "config.json"), "{\"metric\": \"new\"}");
            run.Publish();
        }
        Assert.NotNull(new FileInfo(dir.File("link")).LinkTarget);
        Assert.Contains("new", File.ReadAllText(dir.File("link/config.json")));
        AssertNoLeftovers(dir.File("real"));
    }
}
