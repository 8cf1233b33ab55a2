using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Cwa.Core.Engine;

/// <summary>
/// Positioned writes to a scratch file, done on a background thread from a fixed amount of staging memory: the
/// caller copies its values into a free staging chunk and goes on computing while the kernel takes them. Writing the
/// 8B kept products (7.2 GB) synchronously blocked the forward sweep for 17 s of a 113 s sweep whenever the kernel
/// throttled its dirty pages (2.3 s with this writer). A caller waits only when every chunk is still queued. A
/// failed write is reported by the next <see cref="Write"/> or by <see cref="Flush"/>; later writes are dropped.
/// </summary>
internal sealed unsafe class BackgroundFileWriter : IDisposable
{
    private const int MaxChunkBytes = 8 << 20;
    private readonly SafeFileHandle _file;
    private readonly int _chunkBytes;
    private readonly nint[] _chunks;
    private readonly BlockingCollection<nint> _free = new(new ConcurrentQueue<nint>());
    private readonly BlockingCollection<(nint Chunk, int Length, long Offset)> _queued = new(new ConcurrentQueue<(nint, int, long)>());
    private readonly object _gate = new();
    private readonly Thread _thread;
    private int _inFlight;
    private Exception? _failure;
    private bool _disposed;

    /// <param name="stagingBytes">staging memory, all of it used in turn (chunks are taken first in, first out)</param>
    public BackgroundFileWriter(SafeFileHandle file, long stagingBytes)
    {
        _file = file;
        _chunkBytes = (int)Math.Clamp(stagingBytes, 4096, MaxChunkBytes);
        _chunks = new nint[Math.Max(1, (int)((stagingBytes + _chunkBytes - 1) / _chunkBytes))];
        for (int i = 0; i < _chunks.Length; i++)
        {
            _chunks[i] = (nint)NativeMemory.Alloc((nuint)_chunkBytes);
            _free.Add(_chunks[i]);
        }
        _thread = new Thread(WriteQueued) { IsBackground = true, Name = "cwa scratch writer" };
        _thread.Start();
    }

    /// <summary>Staging memory this writer holds: whole chunks of at most 8 MiB, so up to a chunk more than asked for.</summary>
    public long StagingBytes => (long)_chunks.Length * _chunkBytes;

    /// <summary>Queues data to be written at offset; returns once it is copied into staging memory.</summary>
    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfFailed();
        for (int done = 0; done < data.Length;)
        {
            nint chunk = _free.Take();
            int n = Math.Min(_chunkBytes, data.Length - done);
            data.Slice(done, n).CopyTo(new Span<byte>((void*)chunk, n));
            lock (_gate) _inFlight++;
            _queued.Add((chunk, n, offset + done));
            done += n;
        }
    }

    /// <summary>Waits until everything queued is in the file (then reads see it).</summary>
    public void Flush()
    {
        lock (_gate)
            while (_inFlight > 0) Monitor.Wait(_gate);
        ThrowIfFailed();
    }

    private void ThrowIfFailed()
    {
        var failure = Volatile.Read(ref _failure);
        if (failure != null) throw new IOException(failure.Message, failure);
    }

    private void WriteQueued()
    {
        foreach (var (chunk, length, offset) in _queued.GetConsumingEnumerable())
        {
            if (Volatile.Read(ref _failure) == null)
                try { RandomAccess.Write(_file, new ReadOnlySpan<byte>((void*)chunk, length), offset); }
                catch (Exception e) { Volatile.Write(ref _failure, e); }
            _free.Add(chunk);
            lock (_gate)
                if (--_inFlight == 0) Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Writes what is queued, stops the thread and frees the staging memory (failures are not reported here).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _queued.CompleteAdding();
        _thread.Join();
        foreach (var chunk in _chunks) NativeMemory.Free((void*)chunk);
        _free.Dispose();
        _queued.Dispose();
    }
}
