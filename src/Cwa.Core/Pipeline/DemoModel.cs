using System.Reflection;
using System.Security.Cryptography;

namespace Cwa.Core.Pipeline;

/// <summary>
/// The demo model trained by `cwa train-demo` ships inside Cwa.Core as embedded resources, so `cwa analyze` works
/// from any build output (including a single-file publish). It is unpacked once into a cache folder keyed by the
/// content hash, so a new build with new weights never reuses stale files.
/// </summary>
public static class DemoModel
{
    private const string Prefix = "Cwa.Core.Models.Demo.";
    public const string Name = "built-in demo model";

    public static bool IsAvailable => Resources().Any(r => r.EndsWith(".safetensors", StringComparison.Ordinal));

    public static string Extract()
    {
        var asm = Assembly.GetExecutingAssembly();
        var names = Resources();
        if (!names.Any(r => r.EndsWith(".safetensors", StringComparison.Ordinal)))
            throw new CwaException("this build has no built-in demo model (run `cwa train-demo` to create src/Cwa.Core/Models/Demo) — pass --model DIR instead");
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var n in names)
        {
            using var s = asm.GetManifestResourceStream(n)!;
            hash.AppendData(SHA256.HashData(s));
        }
        string dir = Path.Combine(CacheRoot(), "demo-" + Convert.ToHexStringLower(hash.GetHashAndReset())[..16]);
        if (File.Exists(Path.Combine(dir, ".complete"))) return dir;
        string tmp = dir + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(tmp);
        foreach (var n in names)
        {
            using var src = asm.GetManifestResourceStream(n)!;
            using var dst = File.Create(Path.Combine(tmp, n[Prefix.Length..]));
            src.CopyTo(dst);
        }
        File.WriteAllText(Path.Combine(tmp, ".complete"), "");
        try { Directory.Move(tmp, dir); }
        catch (IOException) when (File.Exists(Path.Combine(dir, ".complete"))) { Directory.Delete(tmp, true); } // another process won the race
        return dir;
    }

    private static List<string> Resources() =>
        Assembly.GetExecutingAssembly().GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();

    private static string CacheRoot()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string root = !string.IsNullOrEmpty(xdg) ? xdg : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache") : Path.GetTempPath();
        return Path.Combine(root, "cwa");
    }
}
