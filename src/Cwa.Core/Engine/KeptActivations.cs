using System.Diagnostics;
using System.Runtime.InteropServices;
using Cwa.Core.Checkpoints;
using Microsoft.Win32.SafeHandles;

namespace Cwa.Core.Engine;

/// <summary>
/// What a layer-major gradient pass keeps from each block's forward for its backward (<see cref="IBlockEngine.KeptPerRow"/>
/// values per row), one slot per (block, batch): in process memory, or in a scratch file written and read with
/// positioned writes on a background thread (<see cref="BackgroundFileWriter"/>), past the page cache where the file
/// system allows (<see cref="DirectIo"/>), and plain positioned reads; writing through a shared mapping instead cost a
/// page fault per 4 KB (25 s at 8B).
/// The next block's slots are read ahead in the background during the backward sweep.
/// </summary>
internal sealed unsafe class KeptActivations : IDisposable
{
    private readonly SlotLayout _layout;
    private readonly float* _memory;
    private readonly SafeFileHandle? _file;
    private readonly SafeFileHandle? _direct;
    private readonly BackgroundFileWriter? _writer;
    private readonly PageWarmer? _warmer;
    private bool _disposed;

    public string? Path { get; }
    /// <summary>Whether the scratch file's writes so far went past the page cache.</summary>
    public bool WritesDirect => _writer?.WritesDirect ?? false;
    public long Bytes => _layout.Bytes;
    /// <summary>Seconds spent writing kept values and reading them back (parts of the block sweeps in the pass's clock).</summary>
    public double WriteSeconds { get; private set; }
    public double ReadSeconds { get; private set; }

    /// <param name="scratchPath">the file to keep them in (null: process memory); it is deleted on dispose</param>
    public KeptActivations(IReadOnlyList<int> rowsPerBatch, int perRow, int layers, string? scratchPath)
    {
        _layout = new SlotLayout(rowsPerBatch, perRow, layers);
        if (scratchPath == null)
        {
            _memory = (float*)NativeMemory.Alloc((nuint)Bytes);
            return;
        }
        Path = scratchPath;
        try
        {
            _file = File.OpenHandle(scratchPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CwaException($"{scratchPath}: cannot create the scratch file for kept activations ({e.Message})");
        }
        _direct = DirectIo.TryOpenForWrite(scratchPath);
        _writer = new BackgroundFileWriter(_file, Models.MemoryEstimate.KeptStagingBytes(rowsPerBatch.DefaultIfEmpty(0).Max(), perRow), _direct);
        _warmer = new PageWarmer();
    }

    public KeptSlot Slot(int layer, int batch) => new(this, layer, batch);

    internal void Write(int layer, int batch, long at, ReadOnlySpan<float> values)
    {
        long started = Stopwatch.GetTimestamp();
        try { WriteSlot(layer, batch, at, values); }
        finally { WriteSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds; }
    }

    internal void Read(int layer, int batch, long at, Span<float> values)
    {
        long started = Stopwatch.GetTimestamp();
        try { ReadSlot(layer, batch, at, values); }
        finally { ReadSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds; }
    }

    private void WriteSlot(int layer, int batch, long at, ReadOnlySpan<float> values)
    {
        long start = Start(layer, batch, at, values.Length);
        if (_file == null)
        {
            values.CopyTo(new Span<float>(_memory + start, values.Length));
            return;
        }
        try { _writer!.Write(MemoryMarshal.AsBytes(values), start * sizeof(float)); }
        catch (IOException e) { throw WriteFailed(e); }
    }

    /// <summary>Waits until every kept value handed over is in the scratch file (the end of the forward sweep).</summary>
    public void Flush()
    {
        long started = Stopwatch.GetTimestamp();
        try { WaitForWrites(); }
        finally { WriteSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds; }
    }

    private void WaitForWrites()
    {
        try { _writer?.Flush(); }
        catch (IOException e) { throw WriteFailed(e); }
    }

    private CwaException WriteFailed(IOException e) =>
        new($"{Path}: cannot write the kept activations ({e.Message}); free disk space, or pass a --memory-budget that keeps them in memory");

    private void ReadSlot(int layer, int batch, long at, Span<float> values)
    {
        long start = Start(layer, batch, at, values.Length);
        if (_file == null)
        {
            new ReadOnlySpan<float>(_memory + start, values.Length).CopyTo(values);
            return;
        }
        // After the forward's Flush this returns at once; its time is the read's, not counted as writing too.
        WaitForWrites();
        var bytes = MemoryMarshal.AsBytes(values);
        for (int done = 0; done < bytes.Length;)
        {
            int n = RandomAccess.Read(_file, bytes[done..], start * sizeof(float) + done);
            if (n <= 0) throw new CwaException($"{Path}: the kept activations end early (the scratch file was changed while the run used it)");
            done += n;
        }
        // Each slot is read once, so its pages go now rather than when the kernel must reclaim: the 8B run holds 16 GB
        // of mapped weights and 6-7 GB of process memory on 24 GB, and 7 GB of read slots would otherwise compete
        // with the next block's read-ahead slots and weights. 8B runs with it spent 8.8-18.2 s reading slots (median
        // 11-14 s of 4), without it 14.9-18.7 s (3): a hint, inside this VM's noise.
        DirectIo.Forget(_file, start * sizeof(float), bytes.Length);
    }

    /// <summary>Reads block layer's slots from the scratch file into the page cache in the background.</summary>
    public void Prefetch(int layer)
    {
        if (_warmer == null || layer < 0 || layer >= _layout.Levels) return;
        _warmer.Warm(Path!, _layout.Start(layer, 0) * sizeof(float), _layout.LevelFloats * sizeof(float));
    }

    private long Start(int layer, int batch, long at, int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (at < 0 || at + count > _layout.Length(batch)) throw new ArgumentOutOfRangeException(nameof(at));
        return _layout.Start(layer, batch) + at;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _warmer?.Dispose();
        _writer?.Dispose();
        _direct?.Dispose();
        _file?.Dispose();
        if (_memory != null) NativeMemory.Free(_memory);
    }
}

/// <summary>One (block, batch) slot of <see cref="KeptActivations"/>, or none (the backward then recomputes the block).</summary>
internal readonly struct KeptSlot(KeptActivations? store, int layer, int batch)
{
    public bool IsEmpty => store == null;
    public void Write(long at, ReadOnlySpan<float> values) => store!.Write(layer, batch, at, values);
    public void Read(long at, Span<float> values) => store!.Read(layer, batch, at, values);
}
