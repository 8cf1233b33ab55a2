using System.Text.Json;

namespace Cwa.Core.Checkpoints;

/// <summary>
/// Parses and validates a safetensors header. Every rule failure is an InputException naming the file, because
/// a bad header otherwise surfaces later as garbage weights or an access violation in the memory map.
/// </summary>
internal static class SafeTensorsHeader
{
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    public static (List<TensorInfo> Tensors, Dictionary<string, string> Metadata) Parse(ReadOnlySpan<byte> json, long dataBytes, string path)
    {
        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>();
        var seen = new HashSet<string>();
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 8 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw Bad(path, "header is not a JSON object");
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string name = reader.GetString()!;
                if (!seen.Add(name)) throw Bad(path, $"tensor '{name}' appears twice in the header");
                reader.Read();
                if (name == "__metadata__")
                {
                    ReadMetadata(ref reader, metadata, path);
                    continue;
                }
                tensors.Add(ReadEntry(ref reader, name, path));
            }
            if (reader.Read()) throw Bad(path, "trailing data after the header object");
        }
        catch (JsonException e)
        {
            throw Bad(path, $"header is not valid JSON ({e.Message.Split('.')[0]})");
        }
        catch (InvalidOperationException e)
        {
            throw Bad(path, $"header has an unexpected JSON structure ({e.Message.Split('.')[0]})");
        }
        CheckLayout(tensors, dataBytes, path);
        return (tensors, metadata);
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad(path, "__metadata__ must be an object of strings");
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String) throw Bad(path, $"__metadata__ value '{key}' is not a string");
            metadata[key] = reader.GetString()!;
        }
    }

    private static TensorInfo ReadEntry(ref Utf8JsonReader reader, string name, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad(path, $"entry for tensor '{name}' is not an object");
        string? dtype = null;
        List<long>? shape = null, offsets = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            reader.Read();
            switch (key)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String) throw Bad(path, $"tensor '{name}': dtype is not a string");
                    dtype = reader.GetString();
                    break;
                case "shape":
                    shape = ReadLongs(ref reader, name, "shape", path);
                    break;
                case "data_offsets":
                    offsets = ReadLongs(ref reader, name, "data_offsets", path);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (dtype is null || shape is null || offsets is null)
            throw Bad(path, $"tensor '{name}' lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}");
        var dt = dtype switch
        {
            "F32" => DType.F32, "F16" => DType.F16, "BF16" => DType.BF16, "F64" => DType.F64,
            _ => throw Bad(path, $"tensor '{name}' has unsupported dtype {dtype} (supported: F32, F16, BF16, F64)"),
        };
        if (offsets.Count != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
            throw Bad(path, $"tensor '{name}' has invalid data_offsets [{string.Join(", ", offsets)}]");
        long count = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw Bad(path, $"tensor '{name}' has a negative dimension in shape [{string.Join(", ", shape)}]");
            try { count = checked(count * d); }
            catch (OverflowException) { throw Bad(path, $"tensor '{name}' shape [{string.Join(", ", shape)}] overflows"); }
        }
        long bytes;
        try { bytes = checked(count * DTypeInfo.Size(dt)); }
        catch (OverflowException) { throw Bad(path, $"tensor '{name}' shape [{string.Join(", ", shape)}] overflows"); }
        if (offsets[1] - offsets[0] != bytes)
            throw Bad(path, $"tensor '{name}' occupies {offsets[1] - offsets[0]} bytes but shape [{string.Join(", ", shape)}] x {dt} needs {bytes}");
        return new TensorInfo(name, dt, shape.ToArray(), offsets[0], offsets[1]);
    }

    private static List<long> ReadLongs(ref Utf8JsonReader reader, string name, string field, string path)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad(path, $"tensor '{name}': {field} is not an array");
        var list = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v))
                throw Bad(path, $"tensor '{name}': {field} holds a non-integer value");
            list.Add(v);
        }
        return list;
    }

    /// <summary>Tensors must tile the data section exactly: sorted, contiguous, no overlap, no gap, nothing past the end.</summary>
    private static void CheckLayout(List<TensorInfo> tensors, long dataBytes, string path)
    {
        var sorted = tensors.OrderBy(t => t.DataBegin).ThenBy(t => t.DataEnd).ToList();
        long pos = 0;
        foreach (var t in sorted)
        {
            if (t.DataBegin > dataBytes)
                throw Bad(path, $"tensor '{t.Name}' starts at byte {t.DataBegin}, past the end of the {dataBytes}-byte data section (file truncated?)");
            if (t.DataEnd > dataBytes)
                throw Bad(path, $"tensor '{t.Name}' data ends at byte {t.DataEnd} but the data section has only {dataBytes} bytes (file truncated?)");
            if (t.DataBegin < pos) throw Bad(path, $"tensor '{t.Name}' overlaps the previous tensor (offset {t.DataBegin} < {pos})");
            if (t.DataBegin > pos) throw Bad(path, $"{t.DataBegin - pos} bytes before tensor '{t.Name}' belong to no tensor (offsets must tile the data section)");
            pos = t.DataEnd;
        }
        if (pos != dataBytes)
            throw Bad(path, $"data section has {dataBytes} bytes but the tensors cover {pos}");
    }

    /// <summary>Tensor names come from the file and may hold control characters; escape them to keep one line.</summary>
    public static InputException Bad(string path, string problem) =>
        new($"{path}: invalid safetensors file: {string.Concat(problem.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()))}");
}
