using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Cwa.Core.Reporting;

/// <summary>
/// The out dir of one run, replaced as a whole. Each file being atomic is not enough: a run that failed half way,
/// or two runs into one folder, left tables of one run beside the manifest of another. So a run writes into a
/// staging folder beside the out dir and <see cref="Publish"/> swaps it in at the end (one atomic exchange on
/// Linux): the out dir holds the previous complete run until the new one is complete. A lock file beside it
/// refuses a second concurrent run; on Linux its holder deletes it at the end (see <see cref="TakeLock"/>). Folders that hold a model or anything cwa did not write are refused, because
/// publishing replaces the folder's whole content.
/// </summary>
public sealed partial class RunDirectory : IDisposable
{
    /// <summary>Hidden gradient checkpoint of an interrupted run; it lives in the out dir itself so --resume finds it.</summary>
    public const string CheckpointName = ".cwa-gradients.ckpt.safetensors";

    /// <summary>Files an analyze run writes at the top of its out dir (plots/ holds only PNG and SVG).</summary>
    public static readonly IReadOnlySet<string> KnownFiles = new HashSet<string>(StringComparer.Ordinal)
    {
        "config.json", ExperimentManifest.FileName, "sensitivity_stats.json", "sensitivity_aggregates.json", "top_weights.csv",
        "super_weights.json", "perturbation_results.json", "control_baselines.json", "stability_summary.json", "report.html",
        "scores.safetensors", ScoresParquet.FileName, "known_weights.json", "ablation.json", "sensitivity_mass.json", "calibration_tokens.jsonl", CheckpointName, ".cwa-write-test", "sensitivity_concentration.json",
    };

    public const string PlotsFolder = "plots";

    private readonly FileStream _lock;
    private readonly string _lockPath;
    private readonly string _previous;
    private bool _published;

    /// <summary>Full path of the out dir the user named.</summary>
    public string Target { get; }
    /// <summary>Where this run writes its files until it is published.</summary>
    public string Staging { get; }
    public string CheckpointPath => Path.Combine(Target, CheckpointName);

    private RunDirectory(string target, string staging, string previous, FileStream lockFile, string lockPath)
    {
        Target = target; Staging = staging; _previous = previous; _lock = lockFile; _lockPath = lockPath;
    }

    /// <summary>Checks the folder, takes the lock and creates an empty staging folder.</summary>
    /// <param name="modelDir">the model this run reads (null for the built-in demo): writing into it is refused</param>
    public static RunDirectory Open(string outDir, string? modelDir)
    {
        string target = Check(outDir, modelDir);
        string parent = Path.GetDirectoryName(target)!, name = Path.GetFileName(target);
        FileStream lockFile;
        string lockPath = Path.Combine(parent, $".{name}.cwa-lock");
        try
        {
            Directory.CreateDirectory(parent);
            lockFile = TakeLock(lockPath);
        }
        catch (IOException e) when (e.HResult is SharingViolation or EWouldBlockLinux or EWouldBlockMac)
        {
            throw new InputException($"{outDir}: another cwa run is writing to this --out-dir; wait for it to finish or choose another folder");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{outDir}: cannot write to the output directory ({e.Message})");
        }
        var dir = new RunDirectory(target, Path.Combine(parent, $".{name}.cwa-staging"), Path.Combine(parent, $".{name}.cwa-previous"), lockFile, lockPath);
        try
        {
            dir.Recover();
            // Whatever a killed run left is stale now that this run holds the lock: its staging folder and the
            // temp files of a checkpoint save that never completed (they can be as large as the checkpoint).
            DeleteIfExists(dir.Staging);
            if (Directory.Exists(target))
                foreach (var tmp in Directory.EnumerateFiles(target).Where(f => TempName().IsMatch(Path.GetFileName(f))))
                    File.Delete(tmp);
            Directory.CreateDirectory(dir.Staging);
            string probe = Path.Combine(dir.Staging, ".cwa-write-test");
            File.WriteAllText(probe, "");
            File.Delete(probe);
            return dir;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            dir.Dispose();
            throw new InputException($"{outDir}: cannot write to the output directory ({e.Message})");
        }
        catch
        {
            dir.Dispose();
            throw;
        }
    }

    /// <summary>Replaces the out dir by the staging folder; the previous run's files are then deleted.</summary>
    public void Publish()
    {
        if (_published) throw new InvalidOperationException("run already published");
        if (!Directory.Exists(Target))
            Directory.Move(Staging, Target);
        else if (Exchange(Staging, Target))
            DeleteQuietly(Staging); // now holds the previous run
        else
        {
            // No atomic exchange here: two renames. A crash between them leaves the previous run in _previous,
            // which the next Open moves back.
            DeleteIfExists(_previous);
            Directory.Move(Target, _previous);
            Directory.Move(Staging, Target);
            DeleteQuietly(_previous);
        }
        _published = true;
    }

    public void Dispose()
    {
        if (!_published) DeleteQuietly(Staging);
        // Deleted while still held, so no other process can hold the lock on this file at that moment.
        if (RemovesLockFiles)
            try { File.Delete(_lockPath); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // a left lock file is harmless
        _lock.Dispose();
    }

    /// <summary>Whether lock files are deleted after a run: only where a holder can tell that its file was deleted.</summary>
    internal static readonly bool RemovesLockFiles = OperatingSystem.IsLinux() && Directory.Exists("/proc/self/fd");

    /// <summary>
    /// Opens and exclusively locks the lock file (FileShare.None is an exclusive flock on Unix: a second cwa process,
    /// or a second run in this one, fails here). Because a finishing run deletes its lock file, a process that opened
    /// the file just before the deletion can win its lock after it, on a file no longer at the path, while a third
    /// creates and locks a new one. So a lock on a deleted file does not count: the path is opened again.
    /// </summary>
    private static FileStream TakeLock(string path)
    {
        for (int attempt = 0; ; attempt++)
        {
            var lockFile = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            if (!RemovesLockFiles || !Deleted(lockFile)) return lockFile;
            lockFile.Dispose();
            if (attempt == 100) throw new IOException($"{path} was deleted each of 100 times it was locked");
        }
    }

    /// <summary>Whether an open file has been deleted from its folder (Linux: its /proc/self/fd link says so).</summary>
    internal static bool Deleted(FileStream file)
    {
        string? target = new FileInfo($"/proc/self/fd/{file.SafeFileHandle.DangerousGetHandle()}").LinkTarget;
        return target != null && target.EndsWith(" (deleted)", StringComparison.Ordinal);
    }

    /// <summary>The full out dir path after every refusal rule: not empty, not a file, not a model, nothing foreign in it.</summary>
    private static string Check(string outDir, string? modelDir)
    {
        if (string.IsNullOrWhiteSpace(outDir)) throw new InputException("--out-dir must not be empty");
        string target;
        try { target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir)); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new InputException($"{outDir}: --out-dir is not a valid path ({e.Message})");
        }
        if (File.Exists(target)) throw new InputException($"{outDir}: --out-dir is a file, not a directory");
        // A link is followed: the folder it points to is the one replaced, the link stays.
        if (Directory.Exists(target) && new DirectoryInfo(target).ResolveLinkTarget(returnFinalTarget: true) is { } resolved)
            target = Path.TrimEndingDirectorySeparator(resolved.FullName);
        if (Path.GetDirectoryName(target) == null) throw new InputException($"{outDir}: --out-dir cannot be the root of the file system");
        string cwd = Path.TrimEndingDirectorySeparator(Environment.CurrentDirectory);
        if (SameOrInside(cwd, target))
            throw new InputException($"{outDir}: --out-dir is the current directory or contains it; cwa replaces the out dir as a whole, so name a subfolder");
        if (modelDir != null && SameOrInside(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir)), target))
            throw new InputException($"{outDir}: --out-dir is the model folder (or contains it); results would overwrite the model, so choose another folder");
        if (!Directory.Exists(target)) return target;
        if (ModelEvidence(target) is { } evidence)
            throw new InputException($"{outDir}: --out-dir holds a model ({evidence}); results would overwrite it, so choose another folder");
        var foreign = Foreign(target).Take(3).ToList();
        if (foreign.Count > 0)
            throw new InputException($"{outDir}: --out-dir holds files cwa did not write ({string.Join(", ", foreign)}); cwa replaces the whole folder, so choose a new or empty one");
        return target;
    }

    private static bool SameOrInside(string path, string folder) =>
        path.Equals(folder, StringComparison.Ordinal) || path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>Why a folder looks like a Hugging Face model folder, or null.</summary>
    private static string? ModelEvidence(string dir)
    {
        foreach (var f in new[] { "tokenizer.json", "tokenizer.model", "model.safetensors.index.json" })
            if (File.Exists(Path.Combine(dir, f))) return f;
        var weights = Directory.EnumerateFiles(dir, "*.safetensors").Select(Path.GetFileName).FirstOrDefault(f => !IsKnown(f!));
        if (weights != null) return weights;
        string config = Path.Combine(dir, "config.json");
        if (!File.Exists(config)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(config));
            if (doc.RootElement.ValueKind == JsonValueKind.Object &&
                (doc.RootElement.TryGetProperty("model_type", out _) || doc.RootElement.TryGetProperty("architectures", out _)))
                return "config.json has model_type";
        }
        catch (JsonException) { return "config.json is not a cwa run configuration"; }
        return null;
    }

    /// <summary>Entries of an existing out dir that no analyze run writes.</summary>
    private static IEnumerable<string> Foreign(string dir)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(entry);
            if (TempName().IsMatch(name)) continue;
            if (Directory.Exists(entry))
            {
                if (name != PlotsFolder || new DirectoryInfo(entry).LinkTarget != null) { yield return name + "/"; continue; }
                foreach (var plot in Directory.EnumerateFileSystemEntries(entry).Order(StringComparer.Ordinal))
                {
                    string p = Path.GetFileName(plot);
                    if (!File.Exists(plot) || !(p.EndsWith(".png", StringComparison.Ordinal) || p.EndsWith(".svg", StringComparison.Ordinal) || TempName().IsMatch(p)))
                        yield return $"{PlotsFolder}/{p}";
                }
            }
            else if (!IsKnown(name))
                yield return name;
        }
    }

    /// <summary>A file an analyze run writes: the fixed names, or the partial-sum file of a sharded run.</summary>
    public static bool IsKnown(string name) => KnownFiles.Contains(name) || ShardName().IsMatch(name);

    [GeneratedRegex(@"^shard-\d{4}-of-\d{4}\.safetensors$")]
    private static partial Regex ShardName();

    [GeneratedRegex(@"\.tmp-[0-9a-f]{8}$")]
    private static partial Regex TempName();

    /// <summary>A previous run parked by an interrupted two-rename publish is put back (or dropped if the new one made it).</summary>
    private void Recover()
    {
        if (!Directory.Exists(_previous)) return;
        if (Directory.Exists(Target)) DeleteIfExists(_previous);
        else Directory.Move(_previous, Target);
    }

    private static bool Exchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange) == 0; }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
    }

    private const int AtFdCwd = -100;
    private const uint RenameExchange = 2;

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    // What .NET reports when the exclusive lock is held elsewhere: the flock errno on Unix, a sharing violation on Windows.
    private const int EWouldBlockLinux = 11, EWouldBlockMac = 35, SharingViolation = unchecked((int)0x80070020);

    private static void DeleteIfExists(string dir)
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static void DeleteQuietly(string dir)
    {
        try { DeleteIfExists(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // a stale folder is removed by the next run
    }
}
