using System.Diagnostics;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Pipeline;

/// <summary>
/// No cluster is reachable from here: the Slurm scripts run locally as two array tasks and the merge job would, with
/// the environment Slurm sets; the Kubernetes manifests are checked for what makes the flow work.
/// </summary>
public class DeployScriptTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static string Repo([System.Runtime.CompilerServices.CallerFilePath] string here = "") => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", ".."));

    private static (int Code, string Output) Bash(string script, IReadOnlyDictionary<string, string> env)
    {
        var psi = new ProcessStartInfo("bash", [script]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    [Fact]
    public void TheSlurmScriptsRunAsArrayTasksAndMerge()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var dir = new TempDir();
        // The scripts call "$CWA": a wrapper around the test build's cwa.dll.
        string cwa = dir.File("cwa");
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h : "dotnet";
        File.WriteAllText(cwa, $"#!/usr/bin/env bash\nexec \"{host}\" \"{Path.Combine(AppContext.BaseDirectory, "cwa.dll")}\" \"$@\"\n");
        File.SetUnixFileMode(cwa, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllLines(dir.File("calib.txt"), Cwa.Core.Data.BuiltInCorpus.Calibration.Take(40));
        string slurm = Path.Combine(Repo(), "deploy", "slurm");
        var env = new Dictionary<string, string>
        {
            ["CWA"] = cwa, ["MODEL"] = tiny.Model, ["DATA"] = dir.File("calib.txt"), ["WORK"] = dir.File("work"),
            ["CWA_ARGS"] = "--topk 5 --max-samples 12 --max-length 32 --batch-size 2 --save-plots false --quiet",
            ["SLURM_ARRAY_TASK_MIN"] = "1", ["SLURM_ARRAY_TASK_COUNT"] = "2",
        };
        foreach (var task in new[] { "1", "2" })
        {
            var (code, output) = Bash(Path.Combine(slurm, "analyze-shard.sbatch"), new Dictionary<string, string>(env) { ["SLURM_ARRAY_TASK_ID"] = task });
            Assert.True(code == 0, output);
        }
        Assert.True(File.Exists(Path.Combine(dir.File("work"), "shard-2", "shard-0002-of-0002.safetensors")));
        var merge = Bash(Path.Combine(slurm, "merge.sbatch"), env);
        Assert.True(merge.Code == 0, merge.Output);
        Assert.True(File.Exists(Path.Combine(dir.File("work"), "merged", "top_weights.csv")));
        foreach (var script in Directory.EnumerateFiles(slurm))
        {
            using var check = Process.Start("bash", ["-n", script])!;
            check.WaitForExit();
            Assert.True(check.ExitCode == 0, $"bash -n {script}");
        }
    }

    [Fact]
    public void TheKubernetesJobIsIndexedAndTellsCwaTheCount()
    {
        string k8s = Path.Combine(Repo(), "deploy", "k8s");
        string job = File.ReadAllText(Path.Combine(k8s, "indexed-job.yaml"));
        Assert.Contains("completionMode: Indexed", job);
        Assert.Contains("--shard auto", job);
        int completions = int.Parse(System.Text.RegularExpressions.Regex.Match(job, @"completions: (\d+)").Groups[1].Value);
        Assert.Contains($"- name: CWA_SHARD_COUNT\n              value: \"{completions}\"", job);
        Assert.Contains("cwa merge /work/shard-*/shard-*-of-*.safetensors", File.ReadAllText(Path.Combine(k8s, "merge-job.yaml")));
        Assert.Contains("PublishSingleFile=true", File.ReadAllText(Path.Combine(k8s, "Dockerfile")));
    }
}
