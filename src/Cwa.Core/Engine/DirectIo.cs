using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Cwa.Core.Engine;

/// <summary>
/// A write handle that bypasses the page cache (Linux O_DIRECT), for scratch data written once and read back much
/// later: the kernel then neither copies it into page cache nor writes it back from there. On the 8B run that copy
/// took 16% of one of the two cores during the forward sweep. .NET has no such open option on Unix, so this calls
/// open(2) itself. Writes through it must start at multiples of <see cref="Alignment"/>, be whole multiples of it
/// long and come from memory aligned to it.
/// </summary>
internal static partial class DirectIo
{
    /// <summary>Offset, length and address alignment that satisfies every Linux block device (logical blocks are 512 or 4096 bytes).</summary>
    public const int Alignment = 4096;

    /// <summary>Opens an existing file for direct writes; null where the OS or the file system does not offer them (tmpfs, macOS, Windows).</summary>
    public static SafeFileHandle? TryOpenForWrite(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        int direct = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 or Architecture.X86 => 0x4000,
            Architecture.Arm64 or Architecture.Arm => 0x10000,
            _ => 0,
        };
        if (direct == 0) return null;
        const int writeOnly = 0x1, closeOnExec = 0x80000;
        try
        {
            int fd = Open(path, writeOnly | direct | closeOnExec, 0);
            return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// Tells Linux that [offset, offset + length) of the file will not be read again, so that its clean pages leave the
    /// page cache now rather than when memory runs short (best effort; elsewhere nothing).
    /// </summary>
    public static void Forget(SafeFileHandle handle, long offset, long length)
    {
        if (!OperatingSystem.IsLinux()) return;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            const int dontNeed = 4;
            Fadvise((int)handle.DangerousGetHandle(), offset, length, dontNeed);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);
}
