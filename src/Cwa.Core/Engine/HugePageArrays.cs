using System.Runtime.InteropServices;

namespace Cwa.Core.Engine;

/// <summary>
/// Float arrays of model size (gradient sums, widened blocks) whose memory Linux backs with 2 MB pages
/// (madvise(MADV_HUGEPAGE): transparent huge pages are usually enabled only on request). Their memory is fresh in
/// every phase of a layer-major pass, and faulting it in 4 KB at a time was 28% of the 8B Fisher run's loss-head
/// phase on the benchmark VM (the kernel zeroing pages and handling a fault per page). Zeroed ones are cleared here
/// on every thread, so the faults happen in 2 MB steps. They are not pinned: the pinned heap is never compacted, and
/// at 8B the holes that freed 2 GB vocabulary sums left in it kept 2.1 GB committed while the embedding's sums were
/// placed beside them (a peak of 7.8 GiB against 6.2). Large objects move only when a phase boundary compacts the
/// heap (LayerMajorPass.Reclaim), into memory already touched, so losing the advice there costs no faults.
/// </summary>
internal static partial class HugePageArrays
{
    private const long MinBytes = 64L << 20;
    private const long HugePage = 2L << 20;
    private const int HugePageAdvice = 14; // MADV_HUGEPAGE

    public static float[] Zeroed(long length)
    {
        if (!Advised(length)) return new float[length];
        var array = Uninitialized(length);
        // Cleared on every thread: the first touch of each page (its fault and zeroing by the kernel) happens here.
        const int chunk = 1 << 24;
        int chunks = (int)((length + chunk - 1) / chunk);
        Gemm.ParallelFor(chunks, Gemm.MaxThreads, c => array.AsSpan(c * chunk, (int)Math.Min(chunk, length - (long)c * chunk)).Clear());
        return array;
    }

    /// <summary>The same without clearing, for a caller that writes every value before reading any (a widened block).</summary>
    public static unsafe float[] Uninitialized(long length)
    {
        if (!Advised(length)) return new float[length];
        var array = GC.AllocateUninitializedArray<float>(checked((int)length));
        fixed (float* p = array)
        {
            long first = ((long)p + HugePage - 1) & ~(HugePage - 1), end = ((long)p + length * sizeof(float)) & ~(HugePage - 1);
            if (end > first)
                try { _ = Madvise((nint)first, (nuint)(end - first), HugePageAdvice); }
                catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        }
        return array;
    }

    private static bool Advised(long length) => OperatingSystem.IsLinux() && length * sizeof(float) >= MinBytes;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
