namespace Cwa.Core.Data;

/// <summary>
/// Checks a parquet file's footer before the parquet library parses it: the trailing length and magic, and that the
/// footer is well-formed Thrift compact protocol that ends within its bytes, with no count larger than the bytes left.
/// Fuzzing found footers on which the parquet library loops for minutes; this rejects most of them in microseconds
/// (TextSource bounds the rest with a watchdog).
/// </summary>
internal static class ParquetFooter
{
    private const int MaxDepth = 64;

    public static void Check(string path)
    {
        using var f = File.OpenRead(path);
        long size = f.Length;
        if (size < 12) throw Bad(path, $"the file has {size} bytes, too few for a parquet file");
        var tail = new byte[8];
        f.Seek(size - 8, SeekOrigin.Begin);
        f.ReadExactly(tail);
        if (tail[4] != 'P' || tail[5] != 'A' || tail[6] != 'R' || tail[7] != '1') throw Bad(path, "it does not end with the PAR1 magic");
        long length = BitConverter.ToUInt32(tail, 0);
        if (length == 0 || length > size - 12) throw Bad(path, $"its footer length {length} does not fit the {size}-byte file");
        var footer = new byte[length];
        f.Seek(size - 8 - length, SeekOrigin.Begin);
        f.ReadExactly(footer);
        int pos = 0;
        try { SkipStruct(footer, ref pos, 0); }
        catch (FormatException e) { throw Bad(path, $"its footer metadata is damaged ({e.Message})"); }
    }

    private static InputException Bad(string path, string why) => new($"{path}: cannot read parquet file ({why})");

    private static void SkipStruct(byte[] b, ref int pos, int depth)
    {
        if (depth > MaxDepth) throw new FormatException("nested too deep");
        while (true)
        {
            byte header = Byte(b, ref pos);
            int type = header & 0x0F;
            if (type == 0) return; // STOP
            if (header >> 4 == 0) VarInt(b, ref pos); // long-form field id
            SkipValue(b, ref pos, type, depth);
        }
    }

    private static void SkipValue(byte[] b, ref int pos, int type, int depth)
    {
        switch (type)
        {
            case 1 or 2: break; // booleans live in the header; the parquet library reads none for list elements either
            case 13: Take(b, ref pos, 16); break; // uuid
            case 3: Byte(b, ref pos); break;
            case 4 or 5 or 6: VarInt(b, ref pos); break;
            case 7: Take(b, ref pos, 8); break;
            case 8: Take(b, ref pos, Count(b, ref pos)); break;
            case 9 or 10:
            {
                byte h = Byte(b, ref pos);
                long n = h >> 4 == 15 ? Count(b, ref pos) : h >> 4;
                if ((h & 0x0F) is 1 or 2 && n > b.Length) throw new FormatException($"a list of {n} booleans in a {b.Length}-byte footer");
                for (long i = 0; i < n; i++) SkipValue(b, ref pos, h & 0x0F, depth + 1);
                break;
            }
            case 11:
            {
                long n = Count(b, ref pos);
                if (n == 0) break;
                byte kv = Byte(b, ref pos);
                for (long i = 0; i < n; i++)
                {
                    SkipValue(b, ref pos, kv >> 4, depth + 1);
                    SkipValue(b, ref pos, kv & 0x0F, depth + 1);
                }
                break;
            }
            case 12: SkipStruct(b, ref pos, depth + 1); break;
            default: throw new FormatException($"unknown field type {type} at byte {pos}");
        }
    }

    /// <summary>A length or count: a varint that must not exceed the bytes left (every element takes at least one).</summary>
    private static int Count(byte[] b, ref int pos)
    {
        ulong n = VarInt(b, ref pos);
        if (n > (ulong)(b.Length - pos)) throw new FormatException($"a count of {n} with {b.Length - pos} bytes left");
        return (int)n;
    }

    private static ulong VarInt(byte[] b, ref int pos)
    {
        ulong v = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            byte x = Byte(b, ref pos);
            v |= (ulong)(x & 0x7F) << shift;
            if ((x & 0x80) == 0) return v;
        }
        throw new FormatException($"a varint longer than 10 bytes at byte {pos}");
    }

    private static byte Byte(byte[] b, ref int pos) => pos < b.Length ? b[pos++] : throw new FormatException("it ends in the middle of a value");

    private static void Take(byte[] b, ref int pos, int n)
    {
        if (n > b.Length - pos) throw new FormatException("it ends in the middle of a value");
        pos += n;
    }
}
