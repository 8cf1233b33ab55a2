using System.Runtime.InteropServices;

namespace Cwa.Core.Checkpoints;

/// <summary>
/// Asks the kernel to start reading pages of a memory mapping before they are touched (madvise MADV_WILLNEED): a
/// streamed model's next block is read from disk while the current one computes, instead of page fault by page
/// fault when it is widened. Best effort: where madvise is missing or refuses, pages are simply read on first touch.
/// </summary>
internal static unsafe partial class PageAdvice
{
    private const int WillNeed = 3;
    private static bool _unavailable = !OperatingSystem.IsLinux();

    public static void Prefetch(byte* start, long length)
    {
        if (_unavailable || start == null || length <= 0) return;
        long page = Environment.SystemPageSize;
        long first = (long)start & ~(page - 1);
        try
        {
            Madvise((nint)first, (nuint)((long)start + length - first), WillNeed);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            _unavailable = true;
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
