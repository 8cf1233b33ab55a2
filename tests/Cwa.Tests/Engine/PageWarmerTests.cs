using Cwa.Core.Checkpoints;

namespace Cwa.Tests.Engine;

/// <summary>The background page reader puts the asked ranges in the page cache (checked with mincore(2) on Linux).</summary>
public class PageWarmerTests
{
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
        PageCacheProbe.Drop(fd);
        long from = (4 << 20) + 100, length = 8 << 20;
        int first = (int)(from / PageCacheProbe.Page), last = (int)((from + length - 1) / PageCacheProbe.Page);
        // A file system that keeps its pages regardless (tmpfs) cannot show the warmer's effect.
        if (PageCacheProbe.Resident(fd, bytes.Length).Skip(first).Take(last - first + 1).Any(r => r)) return;

        using (var warmer = new PageWarmer())
        {
            warmer.Warm(file, from, length);
            warmer.Drain();
        }
        // The kernel may still be reading (readahead returns once the reads are queued): give it a moment.
        bool[] resident = [];
        for (int i = 0; i < 50; i++)
        {
            resident = PageCacheProbe.Resident(fd, bytes.Length);
            if (resident.Skip(first).Take(last - first + 1).All(r => r)) break;
            Thread.Sleep(100);
        }
        var missing = Enumerable.Range(first, last - first + 1).Where(p => !resident[p]).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} of {last - first + 1} pages not in the page cache, first {missing.FirstOrDefault()}");
    }
}
