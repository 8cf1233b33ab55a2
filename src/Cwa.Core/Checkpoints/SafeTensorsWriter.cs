using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Cwa.Core.Checkpoints;

/// <summary>
/// Streams tensors into a safetensors file with a declared layout, so multi-gigabyte files are written one tensor
/// at a time, in any order (a streamed analysis completes its tensors last block first). Data goes to a temp file
/// that Commit() renames over the target: no half-written file is ever visible under the final name.
/// </summary>
public sealed class SafeTensorsWriter : IDisposable
{
    private readonly string _path;
    private readonly string _tempPath;
    private readonly FileStream _stream;
    private readonly List<(string Name, DType DType, long[] Shape)> _layout;
    private readonly Dictionary<string, (int Index, long Offset)> _where = new();
    private readonly HashSet<string> _written = new();
    private readonly long _dataStart;
    private bool _committed;

    /// <param name="reserveHeaderBytes">
    /// room left in the header (as trailing spaces, which JSON readers skip) for metadata only known at the end:
    /// <see cref="Commit(IReadOnlyDictionary{string, string})"/> rewrites the header in place within it
    /// </param>
    public SafeTensorsWriter(string path, IReadOnlyList<(string Name, DType DType, long[] Shape)> layout, IReadOnlyDictionary<string, string>? metadata = null,
        int reserveHeaderBytes = 0)
    {
        _path = path;
        _layout = layout.ToList();
        if (_layout.Select(l => l.Name).Distinct().Count() != _layout.Count)
            throw new ArgumentException("duplicate tensor names in layout", nameof(layout));
        _tempPath = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.Read, 1 << 20);
        byte[] header = BuildHeader(_layout, metadata, reserveHeaderBytes);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        _stream.Write(len);
        _stream.Write(header);
        _dataStart = 8 + header.Length;
        long offset = 0;
        for (int i = 0; i < _layout.Count; i++)
        {
            _where[_layout[i].Name] = (i, offset);
            offset += _layout[i].Shape.Aggregate(1L, (a, d) => a * d) * DTypeInfo.Size(_layout[i].DType);
        }
    }

    private static byte[] BuildHeader(List<(string Name, DType DType, long[] Shape)> layout, IReadOnlyDictionary<string, string>? metadata, int reserve = 0)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape) in layout)
            {
                long bytes = shape.Aggregate(1L, (a, d) => a * d) * DTypeInfo.Size(dtype);
                w.WriteStartObject(name);
                w.WriteString("dtype", DTypeInfo.HeaderName(dtype));
                w.WriteStartArray("shape");
                foreach (long d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        // Pad with spaces to a multiple of 8 so the data section is aligned, as the reference implementation does.
        int pad = reserve + (int)((8 - (ms.Length + reserve) % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    public void Write(string name, ReadOnlySpan<float> data) => WriteConverted(name, data);

    public void Write(string name, ReadOnlySpan<double> data) => WriteConverted(name, data);

    private void WriteConverted<T>(string name, ReadOnlySpan<T> data) where T : unmanaged
    {
        var type = Expect(name, data.Length);
        _stream.Position = _dataStart + _where[name].Offset;
        var buffer = new byte[Math.Min(data.Length, ChunkElements) * DTypeInfo.Size(type)];
        for (int start = 0; start < data.Length; start += ChunkElements)
        {
            int count = Math.Min(ChunkElements, data.Length - start);
            var bytes = buffer.AsSpan(0, count * DTypeInfo.Size(type));
            var src = data.Slice(start, count);
            if (typeof(T) == typeof(float)) DTypeConversion.FromFloat(MemoryMarshal.Cast<T, float>(src), type, bytes);
            else DTypeConversion.FromDouble(MemoryMarshal.Cast<T, double>(src), type, bytes);
            _stream.Write(bytes);
        }
        _written.Add(name);
    }

    private const int ChunkElements = 1 << 22;

    private DType Expect(string name, long length)
    {
        if (!_where.TryGetValue(name, out var at)) throw new InvalidOperationException($"{_path} has no tensor '{name}' in its layout");
        if (_written.Contains(name)) throw new InvalidOperationException($"tensor '{name}' of {_path} was already written");
        var entry = _layout[at.Index];
        long count = entry.Shape.Aggregate(1L, (a, d) => a * d);
        if (count != length) throw new InvalidOperationException($"tensor '{name}' needs {count} values, got {length}");
        return entry.DType;
    }

    /// <summary>
    /// The data section as written so far, read back in file order (tensor layout order) in chunks: what a checksum
    /// over tensors that were written in another order hashes.
    /// </summary>
    public void ReadBackData(Action<ReadOnlySpan<byte>> use)
    {
        _stream.Flush();
        using var read = new FileStream(_tempPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20);
        read.Position = _dataStart;
        var buffer = new byte[1 << 22];
        int n;
        while ((n = read.Read(buffer)) > 0) use(buffer.AsSpan(0, n));
    }

    /// <summary>
    /// Replaces the metadata, then commits. Within the room reserved at construction the header is rewritten in place;
    /// a larger one (a run that skipped thousands of batches) goes into a new file with the data copied behind it.
    /// </summary>
    public void Commit(IReadOnlyDictionary<string, string> metadata)
    {
        byte[] header = BuildHeader(_layout, metadata);
        long room = _dataStart - 8;
        if (header.Length <= room)
        {
            var padded = new byte[room];
            Array.Fill(padded, (byte)' ');
            header.CopyTo(padded, 0);
            _stream.Position = 8;
            _stream.Write(padded);
            Commit();
            return;
        }
        if (_written.Count != _layout.Count) throw new InvalidOperationException($"only {_written.Count} of {_layout.Count} tensors were written to {_path}");
        string larger = _tempPath + "-h";
        try
        {
            using (var output = new FileStream(larger, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                output.Write(len);
                output.Write(header);
                ReadBackData(output.Write);
                output.Flush(flushToDisk: true);
            }
            _stream.Dispose();
            File.Delete(_tempPath);
            File.Move(larger, _path, overwrite: true);
            _committed = true;
        }
        finally
        {
            if (File.Exists(larger)) File.Delete(larger);
        }
    }

    public void Commit()
    {
        if (_written.Count != _layout.Count) throw new InvalidOperationException($"only {_written.Count} of {_layout.Count} tensors were written to {_path}");
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(_tempPath, _path, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        _stream.Dispose();
        if (!_committed && File.Exists(_tempPath)) File.Delete(_tempPath);
    }
}
