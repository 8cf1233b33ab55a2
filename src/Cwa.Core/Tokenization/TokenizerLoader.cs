using Cwa.Core.Models;

namespace Cwa.Core.Tokenization;

/// <summary>Loads a model folder's tokenizer: tokenizer.json (BPE) first, else tokenizer.model (SentencePiece).</summary>
public static class TokenizerLoader
{
    public static ITextTokenizer Load(string modelDir, ModelConfig? config = null)
    {
        var settings = TokenizerSettings.Read(modelDir, config);
        string json = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(json)) return HfBpeTokenizer.Load(json, settings);
        string sp = Path.Combine(modelDir, "tokenizer.model");
        if (File.Exists(sp)) return SentencePieceTextTokenizer.Load(sp, settings);
        throw new InputException($"{modelDir}: no tokenizer.json or tokenizer.model found");
    }
}
