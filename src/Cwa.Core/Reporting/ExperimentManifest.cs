using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Cwa.Core.Reporting;

/// <summary>
/// experiment_manifest.json: enough to reproduce and audit a run — tool version and commit, machine, full
/// config, model identity (shard header hashes), data identity (hash of the texts), seeds, per-phase timings,
/// results, and every output file with its size and sha256.
/// </summary>
public sealed class ExperimentManifest
{
    public required string ExperimentName { get; init; }
    public required DateTimeOffset Start { get; init; }
    public required JsonObject Config { get; init; }
    public required JsonObject Model { get; init; }
    public required JsonObject Data { get; init; }
    public required IReadOnlyList<int> Seeds { get; init; }
    public required IReadOnlyList<(string Phase, double Seconds)> Timings { get; init; }
    public JsonObject Results { get; init; } = new();
    public string? Gpu { get; init; }

    public const string FileName = "experiment_manifest.json";

    public void Write(string outDir)
    {
        var end = DateTimeOffset.UtcNow;
        var timing = new JsonObject();
        foreach (var (phase, s) in Timings) timing[phase] = Math.Round(s, 4);
        var root = new JsonObject
        {
            ["experiment_name"] = ExperimentName,
            ["timestamp_start"] = Start.UtcDateTime.ToString("O"),
            ["timestamp_end"] = end.UtcDateTime.ToString("O"),
            ["tool"] = new JsonObject { ["name"] = "cwa", ["version"] = Version(), ["git_commit"] = GitCommit() },
            ["environment"] = Environment(Gpu),
            ["config"] = Config.DeepClone(),
            ["model"] = Model.DeepClone(),
            ["data"] = Data.DeepClone(),
            ["seeds"] = new JsonArray(Seeds.Select(s => (JsonNode)s).ToArray()),
            ["timing"] = timing,
            ["results"] = Results.DeepClone(),
            ["output_files"] = OutputFiles(outDir),
            ["total_duration_seconds"] = Math.Round((end - Start).TotalSeconds, 4),
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, FileName), root.ToJsonString(JsonOutput.Options));
    }

    public static string Sha256Hex(IEnumerable<string> texts)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in texts)
        {
            h.AppendData(System.Text.Encoding.UTF8.GetBytes(t));
            h.AppendData([0]);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    private static JsonArray OutputFiles(string outDir)
    {
        var files = new JsonArray();
        foreach (var f in Directory.EnumerateFiles(outDir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            string rel = Path.GetRelativePath(outDir, f).Replace('\\', '/');
            if (rel == FileName || rel.Contains(".tmp-")) continue;
            using var s = File.OpenRead(f);
            files.Add(new JsonObject { ["path"] = rel, ["size_bytes"] = s.Length, ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(s)) });
        }
        return files;
    }

    private static string Version() =>
        typeof(ExperimentManifest).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    internal static string? GitCommit()
    {
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("git", "rev-parse HEAD") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = System.Diagnostics.Process.Start(psi);
            if (p == null) return null;
            string output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit(2000);
            return p.ExitCode == 0 && output.Length == 40 ? output : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return null;
        }
    }

    private static JsonObject Environment(string? gpu)
    {
        string cpu = "unknown";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new JsonObject
        {
            ["os"] = RuntimeInformation.OSDescription,
            ["dotnet"] = RuntimeInformation.FrameworkDescription,
            ["cpu"] = cpu,
            ["architecture"] = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(),
            // Kernels of different vector widths round differently: scores agree across machines to rounding, and
            // bit for bit only between machines with the same kernel.
            ["sgemm_kernel"] = Engine.MicroKernels.Best.ToString().ToLowerInvariant(),
            ["cores"] = System.Environment.ProcessorCount,
            ["memory_gb"] = Math.Round(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (double)(1L << 30), 2),
            ["gpu"] = gpu,
        };
    }
}
