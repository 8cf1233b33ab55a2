using System.Text;

namespace Cwa.Tests.Tokenization;

/// <summary>
/// Writes a minimal SentencePiece ModelProto (BPE, byte fallback) by hand: pieces (field 1), trainer_spec (2),
/// normalizer_spec (3). Layout: &lt;unk&gt;=0, &lt;s&gt;=1, &lt;/s&gt;=2, &lt;0x00&gt;..&lt;0xFF&gt;=3..258, then the given pieces.
/// </summary>
internal static class SentencePieceModelBuilder
{
    private const int Normal = 1, Unknown = 2, Control = 3, ByteType = 6;

    public static byte[] Build(IReadOnlyList<string> pieces)
    {
        var model = new MemoryStream();
        void Piece(string p, float score, int type)
        {
            var m = new MemoryStream();
            WriteString(m, 1, p);
            WriteTag(m, 2, 5); m.Write(BitConverter.GetBytes(score));
            WriteTag(m, 3, 0); WriteVarint(m, (ulong)type);
            WriteBytes(model, 1, m.ToArray());
        }
        Piece("<unk>", 0, Unknown);
        Piece("<s>", 0, Control);
        Piece("</s>", 0, Control);
        for (int b = 0; b < 256; b++) Piece($"<0x{b:X2}>", 0, ByteType);
        for (int i = 0; i < pieces.Count; i++) Piece(pieces[i], -i, Normal); // BPE: higher score merges first

        var trainer = new MemoryStream();
        WriteVarintField(trainer, 3, 2); // model_type = BPE
        WriteVarintField(trainer, 4, (ulong)(259 + pieces.Count)); // vocab_size
        WriteVarintField(trainer, 35, 1); // byte_fallback
        WriteVarintField(trainer, 40, 0); // unk_id
        WriteVarintField(trainer, 41, 1); // bos_id
        WriteVarintField(trainer, 42, 2); // eos_id
        WriteVarintField(trainer, 43, unchecked((ulong)-1L)); // pad_id = -1
        WriteBytes(model, 2, trainer.ToArray());

        var norm = new MemoryStream();
        WriteString(norm, 1, "identity");
        WriteVarintField(norm, 3, 1); // add_dummy_prefix
        WriteVarintField(norm, 4, 0); // remove_extra_whitespaces
        WriteVarintField(norm, 5, 1); // escape_whitespaces
        WriteBytes(model, 3, norm.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream s, int field, int wire) => WriteVarint(s, (ulong)(field << 3 | wire));
    private static void WriteVarintField(Stream s, int field, ulong v) { WriteTag(s, field, 0); WriteVarint(s, v); }
    private static void WriteString(Stream s, int field, string v) => WriteBytes(s, field, Encoding.UTF8.GetBytes(v));
    private static void WriteBytes(Stream s, int field, byte[] v) { WriteTag(s, field, 2); WriteVarint(s, (ulong)v.Length); s.Write(v); }
    private static void WriteVarint(Stream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }
}
