using System.Runtime.InteropServices;

namespace Cwa.Core;

/// <summary>
/// Checks on files the user names before they are opened: a FIFO in place of config.json would block the run
/// forever, and a shard that links to /dev/null or another device has no real content. Only regular files (links
/// followed) are read.
/// </summary>
public static partial class InputFiles
{
    /// <summary>Throws an input error naming the path unless it is a regular file; a missing path is left to the caller.</summary>
    public static void EnsureRegular(string path)
    {
        if (Directory.Exists(path)) throw new InputException($"{path}: is a directory, not a file");
        if (!File.Exists(path) || !OperatingSystem.IsLinux()) return;
        if (Kind(path) is { } kind && kind != RegularFile)
            throw new InputException($"{path}: is not a regular file ({Describe(kind)}); cwa reads only regular files");
    }

    private const int RegularFile = 0x8000;

    private static string Describe(int kind) => kind switch
    {
        0x1000 => "a FIFO",
        0x2000 => "a character device",
        0x6000 => "a block device",
        0xC000 => "a socket",
        _ => $"file type 0x{kind:x}",
    };

    /// <summary>The S_IFMT bits of the file's mode from statx (whose layout is the same on every architecture), or null.</summary>
    private static unsafe int? Kind(string path)
    {
        byte* buffer = stackalloc byte[256];
        try
        {
            // AT_FDCWD, no flags (links followed), STATX_TYPE; stx_mode is the u16 at offset 28.
            if (Statx(-100, path, 0, 0x1, buffer) != 0) return null;
            return *(ushort*)(buffer + 28) & 0xF000;
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);
}
