using System.Runtime.InteropServices;

namespace Cwa.Cuda;

/// <summary>
/// Finds and loads libcublas (and checks it exports cublasGemmEx) from --cuda-lib-dir, LD_LIBRARY_PATH, the CUDA
/// toolkit folders and PyTorch's pip wheels (nvidia/cublas/lib), the usual places on a GPU box. The error lists
/// every path tried, so a user can see at once why nothing was found.
/// </summary>
public static class CublasLocator
{
    private static readonly string[] Names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", "cublas64_13.dll", "cublas64_12.dll"];

    public static IReadOnlyList<string> CandidateDirectories(string? cudaLibDir, bool includeSystem = true)
    {
        var dirs = new List<string>();
        if (cudaLibDir != null) dirs.Add(cudaLibDir);
        if (!includeSystem) return dirs;
        foreach (var d in (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)) dirs.Add(d);
        dirs.AddRange(["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]);
        foreach (var root in new[] { "/opt/torch/.venv/lib", "/usr/local/lib", "/usr/lib" })
            if (Directory.Exists(root))
                foreach (var py in Directory.EnumerateDirectories(root, "python3*"))
                    dirs.Add(Path.Combine(py, "site-packages", "nvidia", "cublas", "lib"));
        return dirs.Distinct().ToList();
    }

    /// <summary>Loads cuBLAS; returns the library handle and the path it came from.</summary>
    public static (IntPtr Handle, string Path) Load(string? cudaLibDir, bool includeSystem = true)
    {
        var tried = new List<string>();
        foreach (var dir in CandidateDirectories(cudaLibDir, includeSystem))
            foreach (var name in Names)
            {
                string path = Path.Combine(dir, name);
                if (!File.Exists(path)) continue;
                tried.Add(path);
                if (NativeLibrary.TryLoad(path, out var handle))
                {
                    if (NativeLibrary.TryGetExport(handle, "cublasGemmEx", out _)) return (handle, path);
                    NativeLibrary.Free(handle);
                }
            }
        var searched = CandidateDirectories(cudaLibDir, includeSystem);
        throw new Core.InputException(
            $"--device cuda: cuBLAS (libcublas.so) not found or not loadable; looked in: {(searched.Count == 0 ? "(nowhere)" : string.Join(", ", searched))}" +
            (tried.Count > 0 ? $"; failed to load: {string.Join(", ", tried)}" : "") + ". Install the CUDA toolkit or pass --cuda-lib-dir DIR");
    }
}
