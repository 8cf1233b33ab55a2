using System.Diagnostics;
using System.Text.Json;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// The memory plan a run is refused or placed by is true: within 25% of the peak anonymous memory a real cwa
/// process measures (its own sampling of RssAnon, recorded in the manifest), for the demo and small presets, in
/// memory and layer-streamed. A separate process, because the test host's own memory would swamp the figure.
/// </summary>
public class MemoryEstimateAccuracyTests
{
    private static (long Estimate, long Peak) Measure(string outDir, params string[] args)
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (string.IsNullOrEmpty(host) || !File.Exists(host))
            host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] all = [Path.Combine(AppContext.BaseDirectory, "cwa.dll"), "analyze", "--out-dir", outDir, "--quiet", "--device", "cpu", .. args];
        foreach (var a in all)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, err + stdout.Result);
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "experiment_manifest.json")));
        var r = m.RootElement.GetProperty("results");
        return (r.GetProperty("memory_estimate_bytes").GetInt64(), r.GetProperty("peak_rss_anon_bytes").GetInt64());
    }

    [Theory]
    [InlineData("demo", "off")]
    [InlineData("demo", "on")]
    [InlineData("small", "off")]
    [InlineData("small", "on")]
    [InlineData("small", "on", "fisher")] // per-batch sums, scores written over them
    public void TheEstimateIsWithinAQuarterOfTheMeasuredPeak(string preset, string streaming, string metric = "grad_x_weight")
    {
        if (!OperatingSystem.IsLinux()) return; // the peak is read from /proc
        using var dir = new TempDir();
        string[] model = [];
        if (preset != "demo")
        {
            Assert.Equal(0, Cli.Run("create-test-model", "--preset", preset, "--out", dir.File("m"), "--quiet").Code);
            model = ["--model", dir.File("m")];
        }
        var (estimate, peak) = Measure(dir.File("out"), [.. model, "--streaming", streaming, "--metric", metric, "--max-samples", "24", "--save-plots", "false"]);
        Assert.True(peak > 0, "no peak measured");
        double error = (double)estimate / peak - 1;
        Assert.True(Math.Abs(error) <= 0.25, $"{preset}, streaming {streaming}, {metric}: estimate {estimate >> 20} MiB, measured peak {peak >> 20} MiB ({error:P0})");
    }
}
