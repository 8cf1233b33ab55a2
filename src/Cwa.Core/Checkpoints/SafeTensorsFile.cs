using System.IO.Hashing;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Cwa.Core.Checkpoints;

/// <summary>
/// A memory-mapped safetensors file: the header is validated on open, tensor bytes are only touched when a tensor
/// is read, so opening an 8B checkpoint costs nothing and conversion happens one tensor at a time.
/// </summary>
public sealed unsafe class SafeTensorsFile : ITensorSource, IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly long _size;
    private readonly Dictionary<string, TensorInfo> _tensors;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<string> Names { get; }
    /// <summary>sha256 (hex) of the 8 length bytes plus the header: identifies the checkpoint cheaply in manifests.</summary>
    public string HeaderSha256 { get; }

    private SafeTensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long size, long dataStart,
        List<TensorInfo> tensors, Dictionary<string, string> metadata, string headerSha)
    {
        Path = path; _map = map; _view = view; _base = basePtr; _size = size; _dataStart = dataStart;
        _tensors = tensors.ToDictionary(t => t.Name);
        Names = tensors.OrderBy(t => t.DataBegin).Select(t => t.Name).ToList();
        Metadata = metadata;
        HeaderSha256 = headerSha;
    }

    public static SafeTensorsFile Open(string path)
    {
        InputFiles.EnsureRegular(path);
        if (!File.Exists(path)) throw new InputException($"{path}: file not found");
        long size = new FileInfo(path).Length;
        if (size < 8) throw SafeTensorsHeader.Bad(path, $"file has {size} bytes, fewer than the 8-byte header length");
        MemoryMappedFile map;
        try { map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read); }
        catch (IOException e) { throw new InputException($"{path}: cannot open ({e.Message})"); }
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            ulong headerLen = *(ulong*)p;
            if (headerLen > SafeTensorsHeader.MaxHeaderBytes)
                throw SafeTensorsHeader.Bad(path, $"header length {headerLen} exceeds the {SafeTensorsHeader.MaxHeaderBytes}-byte limit");
            if ((long)headerLen > size - 8)
                throw SafeTensorsHeader.Bad(path, $"header length {headerLen} is larger than the file ({size} bytes)");
            var header = new ReadOnlySpan<byte>(p + 8, (int)headerLen);
            var (tensors, metadata) = SafeTensorsHeader.Parse(header, size - 8 - (long)headerLen, path);
            string sha = Convert.ToHexStringLower(SHA256.HashData(new ReadOnlySpan<byte>(p, 8 + (int)headerLen)));
            return new SafeTensorsFile(path, map, view, p, size, 8 + (long)headerLen, tensors, metadata, sha);
        }
        catch
        {
            view?.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorInfo Info(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new InputException($"{Path}: no tensor named '{name}'");

    public long[] Shape(string name) => Info(name).Shape;
    public DType StoredType(string name) => Info(name).DType;

    /// <summary>The stored bytes of a tensor (valid while this file is open).</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        var t = Info(name);
        return new ReadOnlySpan<byte>(_base + _dataStart + t.DataBegin, checked((int)(t.DataEnd - t.DataBegin)));
    }

    /// <summary>count stored bytes of a tensor from byte offset (tensors can exceed the 2 GB a span covers).</summary>
    public ReadOnlySpan<byte> RawSlice(string name, long offset, int count)
    {
        var t = Info(name);
        if (offset < 0 || count < 0 || offset + count > t.DataEnd - t.DataBegin) throw new ArgumentOutOfRangeException(nameof(offset));
        return new ReadOnlySpan<byte>(_base + _dataStart + t.DataBegin + offset, count);
    }

    /// <summary>
    /// XxHash3 of every byte of the file, header and data, so two checkpoints with equal headers but other weights
    /// differ. 64 MiB chunks are hashed on all cores and their hashes hashed in order.
    /// </summary>
    public ulong ContentHash()
    {
        const long chunk = 64L << 20;
        var hashes = new ulong[(_size + chunk - 1) / chunk];
        Parallel.For(0, hashes.Length, c =>
        {
            long offset = c * chunk;
            hashes[c] = XxHash3.HashToUInt64(new ReadOnlySpan<byte>(_base + offset, (int)Math.Min(chunk, _size - offset)));
        });
        return XxHash3.HashToUInt64(MemoryMarshal.AsBytes(hashes.AsSpan()));
    }

    public void Read(string name, Span<float> destination) => ReadConverted(name, destination);

    public void Read(string name, Span<double> destination) => ReadConverted(name, destination);

    /// <summary>Queues a tensor's bytes to be read from disk in the background (a streamed block about to be widened).</summary>
    internal void Prefetch(string name, PageWarmer warmer)
    {
        var t = Info(name);
        warmer.Warm(Path, _dataStart + t.DataBegin, t.DataEnd - t.DataBegin);
    }

    /// <summary>Elements [start, start + destination.Length) of a tensor, widened to fp32 (a block or a vocabulary chunk of a streamed model).</summary>
    public void ReadRange(string name, long start, Span<float> destination)
    {
        var t = Info(name);
        if (start < 0 || start + destination.Length > t.ElementCount)
            throw new CwaException($"{Path}: range {start}+{destination.Length} is outside tensor '{name}' ({t.ElementCount} elements)");
        ReadConverted(t, start, destination);
    }

    private void ReadConverted<T>(string name, Span<T> destination) where T : unmanaged
    {
        var t = Info(name);
        CheckLength(t, destination.Length);
        ReadConverted(t, 0, destination);
    }

    private void ReadConverted<T>(TensorInfo t, long first, Span<T> destination) where T : unmanaged
    {
        int size = DTypeInfo.Size(t.DType);
        int length = destination.Length, chunks = (length + ChunkElements - 1) / ChunkElements;
        // Converting an 8B checkpoint is 8 G values: chunks convert on all cores (the mapping is read-only).
        fixed (T* dst = destination)
        {
            T* d = dst;
            Parallel.For(0, chunks, c =>
            {
                int start = c * ChunkElements, n = Math.Min(ChunkElements, length - start);
                if (typeof(T) == typeof(float)) DTypeConversion.ToFloat(Bytes(t, first + start, n, size), t.DType, new Span<float>((float*)d + start, n));
                else DTypeConversion.ToDouble(Bytes(t, first + start, n, size), t.DType, new Span<double>((double*)d + start, n));
            });
        }
    }

    // Chunks keep each byte span far under 2 GB (a 525M-element fp32 embedding is 2.1 GB) and spread a tensor over cores.
    private const int ChunkElements = 1 << 22;

    private ReadOnlySpan<byte> Bytes(TensorInfo t, long start, int count, int size) =>
        new(_base + _dataStart + t.DataBegin + (long)start * size, count * size);

    private void CheckLength(TensorInfo t, int length)
    {
        if (t.ElementCount != length)
            throw new CwaException($"{Path}: tensor '{t.Name}' has {t.ElementCount} elements, destination has {length}");
    }

    public void Dispose()
    {
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
