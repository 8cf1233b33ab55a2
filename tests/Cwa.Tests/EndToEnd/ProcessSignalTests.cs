using System.Diagnostics;
using System.Runtime.InteropServices;
using Cwa.Core.Reporting;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// A real cwa process killed or interrupted in the middle of its gradient pass: the out dir keeps the previous run,
/// nothing half-written stays behind, and --resume finishes with exactly the uninterrupted result.
/// </summary>
public partial class ProcessSignalTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private string[] Args(string model, string outDir, params string[] extra) =>
        ["analyze", "--model", model, "--out-dir", outDir, "--max-samples", "160", "--max-length", "64", "--batch-size", "1",
            "--checkpoint-every", "1", "--topk", "10", "--quiet", "--save-plots", "false", .. extra];

    private static Process Start(string[] args)
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (string.IsNullOrEmpty(host) || !File.Exists(host))
            host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cwa.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        return p;
    }

    /// <summary>Waits until the running process has saved a gradient checkpoint (it is then mid-pass).</summary>
    private static void WaitForCheckpoint(Process p, string outDir)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!File.Exists(Path.Combine(outDir, RunDirectory.CheckpointName)))
        {
            if (p.HasExited) Assert.Fail($"cwa ended (exit {p.ExitCode}) before it saved a checkpoint: {p.StandardError.ReadToEnd()}");
            Assert.True(DateTime.UtcNow < deadline, "no checkpoint within two minutes");
            Thread.Sleep(2);
        }
    }

    /// <summary>The out dir's files except the hidden checkpoint, which an interrupted run is meant to leave.</summary>
    private static Dictionary<string, string> Results(string outDir)
    {
        var s = OutDirTests.Snapshot(outDir);
        foreach (var k in s.Keys.Where(k => k.StartsWith(RunDirectory.CheckpointName, StringComparison.Ordinal)).ToList()) s.Remove(k);
        return s;
    }

    [Fact]
    public void KilledRunKeepsThePreviousRunAndResumesToTheUninterruptedResult()
    {
        using var dir = new TempDir();
        string outDir = dir.File("out");
        var (code, _, err) = Cli.Run(Args(tiny.Model, dir.File("reference")));
        Assert.True(code == 0, err);
        Assert.Equal(0, Cli.Run(Args(tiny.Model, outDir, "--seeds", "9")).Code);
        var previous = Results(outDir);

        using (var p = Start(Args(tiny.Model, outDir)))
        {
            WaitForCheckpoint(p, outDir);
            p.Kill();
            p.WaitForExit();
        }
        Assert.Equal(previous, Results(outDir));

        // Same shapes, other values: the checkpoint's key covers the weights' bytes.
        string other = dir.File("other");
        Assert.Equal(0, Cli.Run("create-test-model", "--preset", "tiny", "--seed", "77", "--out", other, "--quiet").Code);
        (code, _, err) = Cli.Run(Args(other, outDir, "--resume"));
        Assert.Equal(2, code);
        Assert.Contains("checkpoint belongs to a different run", err);
        Assert.Equal(previous, Results(outDir));

        (code, _, err) = Cli.Run(Args(tiny.Model, outDir, "--resume"));
        Assert.True(code == 0, err);
        foreach (var f in new[] { "top_weights.csv", "sensitivity_stats.json", "sensitivity_aggregates.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.File("reference"), f)), File.ReadAllBytes(Path.Combine(outDir, f)));
        Assert.False(File.Exists(Path.Combine(outDir, RunDirectory.CheckpointName)));
        OutDirTests.AssertManifestDescribesTheFolder(outDir);
    }

    [Theory]
    [InlineData(2, "SIGINT", 130)]
    [InlineData(15, "SIGTERM", 143)]
    public void ASignalCancelsWithOneLineAndCleansUp(int signal, string name, int exitCode)
    {
        if (!OperatingSystem.IsLinux()) return;
        using var dir = new TempDir();
        string outDir = dir.File("out");
        Assert.Equal(0, Cli.Run(Args(tiny.Model, outDir, "--seeds", "9")).Code);
        var previous = Results(outDir);
        // A long pass (3,000 one-text batches, a checkpoint after each) so the signal always lands inside it, however
        // late a loaded machine lets this thread see the first checkpoint.
        string texts = dir.File("long.txt");
        File.WriteAllLines(texts, Enumerable.Range(0, 3000).Select(i => $"Line {i} of a long calibration file, {i * 7 % 13} words and some more text to read."));
        using var p = Start([.. Args(tiny.Model, outDir).Select(a => a == "160" ? "3000" : a), "--data-file", texts]);
        WaitForCheckpoint(p, outDir);
        Assert.Equal(0, Kill(p.Id, signal));
        string stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000), "cwa did not stop after the signal");
        Assert.Equal(exitCode, p.ExitCode);
        Assert.Equal($"error: cancelled by {name}; the out dir keeps its previous contents (a gradient checkpoint, if any, is kept for --resume)", stderr.Trim());
        Assert.Equal(previous, Results(outDir));
        Assert.True(File.Exists(Path.Combine(outDir, RunDirectory.CheckpointName)), "the checkpoint is kept for --resume");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path, "*.tmp-*", SearchOption.AllDirectories));
        Assert.False(Directory.Exists(dir.File(".out.cwa-staging")));
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
