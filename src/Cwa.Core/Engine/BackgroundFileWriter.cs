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
/// Given a direct handle (<see cref="DirectIo"/>), data written in one sequential stream from offset 0 (as the kept
/// products are) is gathered into whole aligned chunks and written past the page cache; any other write, or a direct
/// write the file system refuses, sends everything after it through the ordinary handle.
/// </summary>
internal sealed unsafe class BackgroundFileWriter : IDisposable
{
    private const int MaxChunkBytes = 8 << 20;
    private readonly SafeFileHandle _file;
    private readonly SafeFileHandle? _direct;
    private readonly int _chunkBytes;
    private readonly nint[] _chunks;
    private readonly BlockingCollection<nint> _free = new(new ConcurrentQueue<nint>());
    private readonly BlockingCollection<Pending> _queued = new(new ConcurrentQueue<Pending>());
    private readonly object _gate = new();
    private readonly Thread _thread;
    private int _inFlight;
    private Exception? _failure;
    private bool _disposed;
    // The sequential stream's chunk being filled: it starts at file offset _fillStart and holds _fillLength bytes.
    private bool _streaming;
    private nint _fill;
    private long _fillStart;
    private int _fillLength;
    // Set by the writer thread when the file system refuses a direct write; the rest goes through _file.
    private volatile bool _directRefused;

    private readonly record struct Pending(nint Chunk, int Length, long Offset, bool Direct);

    /// <param name="stagingBytes">staging memory, all of it used in turn (chunks are taken first in, first out)</param>
    /// <param name="direct">a handle to the same file opened for direct writes, or null; the caller disposes it</param>
    public BackgroundFileWriter(SafeFileHandle file, long stagingBytes, SafeFileHandle? direct = null)
    {
        _file = file;
        _direct = direct;
        _streaming = direct != null;
        _chunkBytes = (int)Math.Clamp(stagingBytes, DirectIo.Alignment, MaxChunkBytes) / DirectIo.Alignment * DirectIo.Alignment;
        // A direct stream holds one chunk while it fills and one for the padded tail a flush writes.
        int count = Math.Max(direct != null ? 2 : 1, (int)((stagingBytes + _chunkBytes - 1) / _chunkBytes));
        _chunks = new nint[count];
        for (int i = 0; i < _chunks.Length; i++)
        {
            _chunks[i] = (nint)NativeMemory.AlignedAlloc((nuint)_chunkBytes, DirectIo.Alignment);
            _free.Add(_chunks[i]);
        }
        _thread = new Thread(WriteQueued) { IsBackground = true, Name = "cwa scratch writer" };
        _thread.Start();
    }

    /// <summary>Staging memory this writer holds: whole chunks of at most 8 MiB, so up to a chunk more than asked for.</summary>
    public long StagingBytes => (long)_chunks.Length * _chunkBytes;

    /// <summary>Whether writes so far went past the page cache (a direct handle, one sequential stream, none refused).</summary>
    public bool WritesDirect => _streaming && !_directRefused;

    /// <summary>Queues data to be written at offset; returns once it is copied into staging memory.</summary>
    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfFailed();
        if (_streaming && offset == _fillStart + _fillLength)
        {
            Append(data);
            return;
        }
        EndStream();
        for (int done = 0; done < data.Length;)
        {
            nint chunk = _free.Take();
            int n = Math.Min(_chunkBytes, data.Length - done);
            data.Slice(done, n).CopyTo(new Span<byte>((void*)chunk, n));
            Queue(new Pending(chunk, n, offset + done, Direct: false));
            done += n;
        }
    }

    /// <summary>Adds data to the sequential stream, queueing each chunk as it fills (its offset is a multiple of the chunk size).</summary>
    private void Append(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_fill == 0) _fill = _free.Take();
            int n = Math.Min(_chunkBytes - _fillLength, data.Length);
            data[..n].CopyTo(new Span<byte>((byte*)_fill + _fillLength, n));
            _fillLength += n;
            data = data[n..];
            if (_fillLength < _chunkBytes) continue;
            Queue(new Pending(_fill, _chunkBytes, _fillStart, Direct: true));
            _fill = 0;
            _fillStart += _chunkBytes;
            _fillLength = 0;
        }
    }

    /// <summary>A write outside the stream: the partial chunk goes out as it is, and so does everything after it.</summary>
    private void EndStream()
    {
        if (!_streaming) return;
        _streaming = false;
        if (_fill == 0) return;
        if (_fillLength > 0) Queue(new Pending(_fill, _fillLength, _fillStart, Direct: false));
        else _free.Add(_fill);
        _fill = 0;
    }

    /// <summary>Waits until everything queued is in the file (then reads see it).</summary>
    public void Flush()
    {
        if (_streaming && _fillLength > 0)
        {
            // The partial chunk goes out padded to whole blocks from a copy, and stays to be filled on: a later
            // write continues the stream and rewrites those blocks with the padding replaced.
            nint tail = _free.Take();
            int padded = (_fillLength + DirectIo.Alignment - 1) / DirectIo.Alignment * DirectIo.Alignment;
            new Span<byte>((void*)_fill, _fillLength).CopyTo(new Span<byte>((void*)tail, _fillLength));
            new Span<byte>((byte*)tail + _fillLength, padded - _fillLength).Clear();
            Queue(new Pending(tail, padded, _fillStart, Direct: true));
        }
        lock (_gate)
            while (_inFlight > 0) Monitor.Wait(_gate);
        ThrowIfFailed();
    }

    private void Queue(Pending p)
    {
        lock (_gate) _inFlight++;
        _queued.Add(p);
    }

    private void ThrowIfFailed()
    {
        var failure = Volatile.Read(ref _failure);
        if (failure != null) throw new IOException(failure.Message, failure);
    }

    private void WriteQueued()
    {
        foreach (var p in _queued.GetConsumingEnumerable())
        {
            if (Volatile.Read(ref _failure) == null)
                try { WriteOne(p); }
                catch (Exception e) { Volatile.Write(ref _failure, e); }
            _free.Add(p.Chunk);
            lock (_gate)
                if (--_inFlight == 0) Monitor.PulseAll(_gate);
        }
    }

    private void WriteOne(Pending p)
    {
        var data = new ReadOnlySpan<byte>((void*)p.Chunk, p.Length);
        if (p.Direct && !_directRefused)
            try
            {
                RandomAccess.Write(_direct!, data, p.Offset);
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
            {
                // Refused (alignment the device does not accept) or failed: the ordinary handle says which.
                _directRefused = true;
            }
        RandomAccess.Write(_file, data, p.Offset);
    }

    /// <summary>Writes what is queued, stops the thread and frees the staging memory (failures are not reported here).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _queued.CompleteAdding();
        _thread.Join();
        foreach (var chunk in _chunks) NativeMemory.AlignedFree((void*)chunk);
        _free.Dispose();
        _queued.Dispose();
    }
}
