using System.Runtime.InteropServices;

namespace Cwa.Tests.Engine;

/// <summary>Linux page-cache state of a file for tests: which pages are resident (mincore(2)), and dropping them.</summary>
internal static class PageCacheProbe
{
    public const int Page = 4096;

    /// <summary>Drops the file's clean pages (POSIX_FADV_DONTNEED); whether the file system obeys is for the caller to check.</summary>
    public static void Drop(int fd) => Assert.Equal(0, PosixFadvise(fd, 0, 0, 4));

    public static bool[] Resident(int fd, long length)
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
