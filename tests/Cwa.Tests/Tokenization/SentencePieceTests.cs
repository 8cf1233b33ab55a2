using Cwa.Core.Tokenization;

namespace Cwa.Tests.Tokenization;

public class SentencePieceTests
{
    private static readonly string[] Pieces =
    [
        "▁", "h", "e", "l", "o", "w", "r", "d",
        "▁h", "ll", "▁he", "llo", "▁hello", "▁w", "or", "▁wor", "ld", "▁world",
    ];

    private static int Id(string piece) => 259 + Array.IndexOf(Pieces, piece);

    private static ITextTokenizer Load(TempDir dir, string? tokenizerConfig = null)
    {
        File.WriteAllBytes(dir.File("tokenizer.model"), SentencePieceModelBuilder.Build(Pieces));
        if (tokenizerConfig is not null) File.WriteAllText(dir.File("tokenizer_config.json"), tokenizerConfig);
        return TokenizerLoader.Load(dir.Path);
    }

    [Fact]
    public void EncodesKnownPiecesWithBos()
    {
        using var dir = new TempDir();
        var tok = Load(dir);
        Assert.Equal(259 + Pieces.Length, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Equal(2, tok.PadId); // no pad token -> eos
        Assert.True(tok.AddsBos);
        Assert.Equal([1, Id("▁hello"), Id("▁world")], tok.Encode("hello world"));
        Assert.Equal("hello world", tok.Decode(tok.Encode("hello world")));
    }

    [Fact]
    public void ByteFallbackForUnknownCharacters()
    {
        using var dir = new TempDir();
        var tok = Load(dir);
        // é is not a piece: UTF-8 C3 A9 as byte pieces (id = 3 + byte).
        Assert.Equal([1, Id("▁he"), 3 + 0xC3, 3 + 0xA9], tok.Encode("heé"));
        Assert.Equal("heé", tok.Decode(tok.Encode("heé")));
    }

    [Fact]
    public void TokenizerConfigCanDisableBos()
    {
        using var dir = new TempDir();
        var tok = Load(dir, """{"add_bos_token": false, "bos_token": {"content": "<s>"}, "eos_token": "</s>", "pad_token": "<unk>"}""");
        Assert.False(tok.AddsBos);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(0, tok.PadId);
        Assert.Equal([Id("▁hello")], tok.Encode("hello"));
    }
}
