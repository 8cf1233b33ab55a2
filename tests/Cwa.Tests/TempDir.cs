namespace Cwa.Tests;

/// <summary>A temp folder deleted when the test ends.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "cwa-test-" + Guid.NewGuid().ToString("N")[..10]);

    public TempDir() => Directory.CreateDirectory(Path);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
        // The lock file a run leaves beside its out dir when the out dir is this folder itself (where it is not deleted: not Linux).
        try { System.IO.File.Delete(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(Path)!, $".{System.IO.Path.GetFileName(Path)}.cwa-lock")); } catch (IOException) { }
    }
}
