using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// Renders report.html in headless Chromium (Debian package `chromium`, installed by .ci/run) and checks what a
/// reader would see: the summary section and every plot, decoded as an image by the browser.
/// </summary>
public class ReportInBrowserTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [ChromiumFact]
    public void ReportShowsTheSummaryAndEveryPlot()
    {
        using var outDir = new TempDir();
        var (code, _, err) = Cli.Run("analyze", "--model", tiny.Model, "--out-dir", outDir.Path, "--quiet", "--max-samples", "8", "--max-length", "32",
            "--topk", "10", "--perturb", "sign_flip", "--controls", "random_k", "--control-seeds", "2", "--k-sweep", "1,10");
        Assert.True(code == 0, err);
        int plots = Directory.GetFiles(Path.Combine(outDir.Path, "plots"), "*.png").Length;
        Assert.Equal(5, plots);

        // A script in the page reports, after load, how many images the browser decoded to a real size.
        string page = File.ReadAllText(outDir.File("report.html"));
        string probe = page.Replace("</body>", "<script>window.addEventListener('load',()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>100).length;" +
            "document.body.setAttribute('data-decoded', ok);});</script></body>");
        File.WriteAllText(outDir.File("probe.html"), probe);
        string dom = Chromium(outDir, "--dump-dom", new Uri(outDir.File("probe.html")).AbsoluteUri);
        Assert.Contains("id=\"summary\"", dom);
        Assert.Contains("grad_x_weight / per_layer / 10", dom);
        Assert.Equal(plots, Regex.Matches(dom, "<figure class=\"plot\">").Count);
        Assert.Matches($"data-decoded=\"{plots}\"", dom);

        string shot = outDir.File("shot.png");
        Chromium(outDir, $"--screenshot={shot}", "--window-size=1280,2400", new Uri(outDir.File("report.html")).AbsoluteUri);
        Assert.True(new FileInfo(shot).Length > 20_000, "screenshot of the rendered report is suspiciously small");
    }

    private static string Chromium(TempDir dir, params string[] args)
    {
        string exe = File.Exists("/usr/bin/chromium") ? "/usr/bin/chromium" : "chromium";
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--allow-file-access-from-files", $"--user-data-dir={dir.File("profile")}", "--virtual-time-budget=5000" })
            psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start chromium (install the Debian package `chromium`)");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(true); throw new TimeoutException("chromium did not finish in 60 s"); }
        Assert.True(p.ExitCode == 0, $"chromium exited {p.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }
}

/// <summary>
/// A test that needs Chromium. Without one it is reported as skipped, with the reason, so `dotnet test` passes on a
/// machine with only the .NET SDK; CI sets CWA_REQUIRE_CHROMIUM=1 (after installing it), and then a missing browser
/// fails instead of skipping.
/// </summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Found() || Environment.GetEnvironmentVariable("CWA_REQUIRE_CHROMIUM") == "1") return;
        Skip = "Chromium is not installed (Debian: apt-get install chromium); it renders report.html in this test. Set CWA_REQUIRE_CHROMIUM=1 to make its absence a failure.";
    }

    private static bool Found() =>
        File.Exists("/usr/bin/chromium") || (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "chromium")));
}
