using Cwa.Core.Models;

namespace Cwa.Core.Tokenization;

/// <summary>Loads a model folder's tokenizer: tokenizer.json (BPE) first, else tokenizer.model (SentencePiece).</summary>
public static class TokenizerLoader
{
    public static ITextTokenizer Load(string modelDir, ModelConfig? config = null)
    {
        var settings = TokenizerSettings.Read(modelDir, config);
        string json = Path.Combine(modelDir, "tokenizer.json");
        string sp = Path.Combine(modelDir, "tokenizer.model");
        string path = File.Exists(json) || Directory.Exists(json) ? json : sp;
        InputFiles.EnsureRegular(path);
        if (!File.Exists(path)) throw new InputException($"{modelDir}: no tokenizer.json or tokenizer.model found");
        ITextTokenizer tokenizer;
        try { tokenizer = path == json ? HfBpeTokenizer.Load(json, settings) : SentencePieceTextTokenizer.Load(sp, settings); }
        catch (Exception e) when (e is not CwaException)
        {
            throw new InputException($"{path}: not a usable tokenizer ({e.GetType().Name}: {e.Message.Split('\n')[0]})");
        }
        // Some faults (merges naming unknown tokens, an empty vocabulary) only show when text is encoded: try it now,
        // so they are reported against the file, not in the middle of a run.
        try
        {
            if (tokenizer.Encode("The quick brown fox, 1984: naïve café!").Length == 0)
                throw new InputException($"{path}: the tokenizer produces no tokens for ordinary text");
        }
        catch (Exception e) when (e is not CwaException)
        {
            throw new InputException($"{path}: the tokenizer fails on ordinary text ({e.GetType().Name}: {e.Message.Split('\n')[0]})");
        }
        return tokenizer;
    }
}
