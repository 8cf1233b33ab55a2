using System.Runtime.InteropServices;
using Cwa.Core.Checkpoints;

namespace Cwa.Tests.Engine;

/// <summary>The background page reader puts the asked ranges in the page cache (checked with mincore(2) on Linux).</summary>
public class PageWarmerTests
{
    private const int Page = 4096;

    [Fact]
    public void AWarmedRangeIsInThePageCacheAfterItsPagesWereDropped()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var dir = new TempDir();
        string file = dir.File("weights.bin");
        var bytes = new byte[(12 << 20) + 5];
        new Random(1).NextBytes(bytes);
        using (var f = new FileStream(file, FileMode.CreateNew))
        {
            f.Write(bytes);
            f.Flush(flushToDisk: true); // clean pages, which the kernel may drop
        }
        using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read);
        int fd = (int)handle.DangerousGetHandle();
        Assert.Equal(0, PosixFadvise(fd, 0, 0, 4)); // POSIX_FADV_DONTNEED
        long from = (4 << 20) + 100, length = 8 << 20;
        int first = (int)(from / Page), last = (int)((from + length - 1) / Page);
        // A file system that keeps its pages regardless (tmpfs) cannot show the warmer's effect.
        if (Resident(fd, bytes.Length).Skip(first).Take(last - first + 1).Any(r => r)) return;

        using (var warmer = new PageWarmer())
        {
            warmer.Warm(file, from, length);
            warmer.Drain();
        }
        // The kernel may still be reading (readahead returns once the reads are queued): give it a moment.
        bool[] resident = [];
        for (int i = 0; i < 50; i++)
        {
            resident = Resident(fd, bytes.Length);
            if (resident.Skip(first).Take(last - first + 1).All(r => r)) break;
            Thread.Sleep(100);
        }
        var missing = Enumerable.Range(first, last - first + 1).Where(p => !resident[p]).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} of {last - first + 1} pages not in the page cache, first {missing.FirstOrDefault()}");
    }

    private static bool[] Resident(int fd, long length)
    {
        nint map = Mmap(0, (nuint)length, 1 /* PROT_READ */, 1 /* MAP_SHARED */, fd, 0);
        Assert.NotEqual(-1, map);
        try
        {
            var vec = new byte[(length + Page - 1) / Page];
            Assert.Equal(0, Mincore(map, (nuint)length, vec));
            return vec.Select(v => (v & 1) != 0).ToArray();
        }
        finally { Munmap(map, (nuint)length); }
    }

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(int fd, long offset, long length, int advice);

    [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    private static extern int Munmap(nint address, nuint length);

    [DllImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static extern int Mincore(nint address, nuint length, byte[] vector);
}
