using System.Globalization;

namespace Cwa.Core.Reporting;

/// <summary>
/// Peak memory of this process during a run, for the manifest and the memory-estimate checks. The kernel keeps the
/// peak resident set (VmHWM), which includes the page cache of memory-mapped weights; the peak of anonymous memory
/// (RssAnon: heaps and buffers, what a run really needs) is not kept anywhere, so it is sampled every 20 ms.
/// Linux only; elsewhere both stay 0.
/// </summary>
public sealed class MemoryMonitor : IDisposable
{
    private readonly Timer? _timer;
    private long _peakAnon;

    private MemoryMonitor()
    {
        if (!File.Exists(StatusFile)) return;
        Sample();
        _timer = new Timer(_ => Sample(), null, 20, 20);
    }

    public static MemoryMonitor Start() => new();

    /// <summary>Largest RssAnon seen so far, in bytes.</summary>
    public long PeakAnonymousBytes
    {
        get
        {
            Sample();
            return Interlocked.Read(ref _peakAnon);
        }
    }

    /// <summary>The kernel's peak resident set (VmHWM) of the whole process so far, in bytes.</summary>
    public static long PeakResidentBytes => Read("VmHWM:");

    private const string StatusFile = "/proc/self/status";

    private void Sample()
    {
        long anon = Read("RssAnon:");
        long seen;
        while (anon > (seen = Interlocked.Read(ref _peakAnon)) && Interlocked.CompareExchange(ref _peakAnon, anon, seen) != seen) { }
    }

    private static long Read(string key)
    {
        try
        {
            foreach (var line in File.ReadLines(StatusFile))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return 0;
    }

    public void Dispose() => _timer?.Dispose();
}
