using Cwa.Core;
using Cwa.Core.Tokenization;
using Microsoft.ML.Tokenizers;

namespace Cwa.Tests.Tokenization;

public class TokenizerReferenceTests(Cl100kAsTokenizerJson cl100k) : IClassFixture<Cl100kAsTokenizerJson>
{
    public static TheoryData<string> Sentences => new()
    {
        "The quick brown fox jumps over the lazy dog.",
        "Which individual weights of an LLM matter most? Column 2427 of layers.1.mlp.down_proj!",
        "def forward(self, x):\n    return self.down(F.silu(self.gate(x)) * self.up(x))  # SwiGLU",
        "Prices rose 12.5% in 2024: 1,234,567 units at $3.99 each.",
        "Ünïcödé, naïve café, 東京, Ελληνικά and emoji 🤖🚀 all work.",
        "   leading spaces,\ttabs\t\tand\n\n\nnewlines   trailing   ",
        "I'm sure they'll say it's what we've done, isn't it?",
    };

    [Theory]
    [MemberData(nameof(Sentences))]
    public void TokenizerJsonMatchesThePackagesReferenceTokenizer(string text)
    {
        var ours = TokenizerLoader.Load(cl100k.Dir.Path);
        var reference = TiktokenTokenizer.CreateForModel("gpt-4");
        Assert.Equal(reference.EncodeToIds(text).ToArray(), ours.Encode(text));
        Assert.Equal(text, ours.Decode(ours.Encode(text)));
        Assert.False(ours.AddsBos);
    }
}

public class TokenizerLoaderTests
{
    [Fact]
    public void TrainedTokenizerRoundTripsAndAddsBos()
    {
        using var dir = new TempDir();
        var texts = Cwa.Core.Data.BuiltInCorpus.All;
        var trained = ByteLevelBpeTrainer.Train(texts, 512);
        File.WriteAllText(dir.File("tokenizer.json"), trained.TokenizerJson);
        File.WriteAllText(dir.File("tokenizer_config.json"), trained.TokenizerConfigJson);
        var tok = TokenizerLoader.Load(dir.Path);
        Assert.Equal(512, tok.VocabSize);
        Assert.True(tok.AddsBos);
        Assert.Equal(trained.BosId, tok.BosId);
        Assert.Equal(trained.PadId, tok.PadId);
        foreach (var s in new[] { "The harbor town opens before sunrise.", "naïve café 東京 🤖", "x = 42;\n\ty += 1" })
        {
            var ids = tok.Encode(s);
            Assert.Equal(trained.BosId, ids[0]);
            Assert.All(ids, i => Assert.InRange(i, 0, 511));
            Assert.Equal(s, tok.Decode(ids));
        }
        // Merges learned from the corpus make its text shorter than one token per byte.
        var para = texts[0];
        Assert.True(tok.Encode(para).Length < System.Text.Encoding.UTF8.GetByteCount(para) / 2);
    }

    [Fact]
    public void TrainingIsDeterministic()
    {
        var texts = Cwa.Core.Data.BuiltInCorpus.All.Take(40).ToList();
        Assert.Equal(ByteLevelBpeTrainer.Train(texts, 400).TokenizerJson, ByteLevelBpeTrainer.Train(texts, 400).TokenizerJson);
    }

    [Theory]
    [InlineData("a*")]          // matches the empty string everywhere: the pre-tokenizer would never advance
    [InlineData("(?=a)|\\s+")]   // an empty match only before an 'a'
    [InlineData("(x+x+)+y|\\S+|\\s+")] // catastrophic backtracking on a run of x
    public async Task ASplitPatternThatCannotTokenizeIsRefusedNotAHang(string pattern)
    {
        using var dir = new TempDir();
        var json = System.Text.Json.Nodes.JsonNode.Parse(ByteLevelBpeTrainer.Train(Cwa.Core.Data.BuiltInCorpus.All.Take(20), 300).TokenizerJson)!;
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = pattern;
        File.WriteAllText(dir.File("tokenizer.json"), json.ToJsonString());
        var task = Task.Run(() =>
        {
            try { TokenizerLoader.Load(dir.Path).Encode("a banana and xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx z"); return "loaded"; }
            catch (InputException e) { return e.Message; }
        });
        Assert.True(await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(30))) == task, "tokenizer load or encode hung");
        Assert.Contains("tokenizer.json: split pattern", await task);
    }

    [Fact]
    public void ABrokenSplitPatternWithALineBreakIsAOneLineError()
    {
        // Found by the fuzzer: the pattern (and the regex parser's message) carried a raw newline into the error.
        using var dir = new TempDir();
        var json = System.Text.Json.Nodes.JsonNode.Parse(ByteLevelBpeTrainer.Train(Cwa.Core.Data.BuiltInCorpus.All.Take(20), 300).TokenizerJson)!;
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = "\\p{L}+| ?[^\\s\\p{\n]*|\\s+";
        File.WriteAllText(dir.File("tokenizer.json"), json.ToJsonString());
        var e = Assert.Throws<InputException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains("split pattern", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    [Fact]
    public void MissingAndMalformedTokenizersAreClearErrors()
    {
        using var dir = new TempDir();
        Assert.Contains("no tokenizer.json or tokenizer.model found", Assert.Throws<InputException>(() => TokenizerLoader.Load(dir.Path)).Message);
        File.WriteAllText(dir.File("tokenizer.json"), "{ not json");
        Assert.Contains("tokenizer.json: malformed JSON", Assert.Throws<InputException>(() => TokenizerLoader.Load(dir.Path)).Message);
        File.WriteAllText(dir.File("tokenizer.json"), """{"model":{"type":"WordPiece","vocab":{}}}""");
        Assert.Contains("'WordPiece' is not supported", Assert.Throws<InputException>(() => TokenizerLoader.Load(dir.Path)).Message);
        File.Delete(dir.File("tokenizer.json"));
        File.WriteAllBytes(dir.File("tokenizer.model"), [1, 2, 3, 4]);
        Assert.Contains("tokenizer.model: cannot read SentencePiece model", Assert.Throws<InputException>(() => TokenizerLoader.Load(dir.Path)).Message);
    }
}
