using Microsoft.ML.Tokenizers;

namespace Cwa.Core.Tokenization;

/// <summary>A SentencePiece tokenizer.model (Llama 2, TinyLlama, Mistral) through Microsoft.ML.Tokenizers.</summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    private readonly LlamaTokenizer _sp;

    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int PadId { get; }
    public bool AddsBos { get; }

    private SentencePieceTextTokenizer(LlamaTokenizer sp, bool addsBos, string? padToken)
    {
        _sp = sp;
        VocabSize = sp.Vocabulary.Count == 0 ? 0 : sp.Vocabulary.Values.Max() + 1;
        BosId = sp.BeginningOfSentenceId;
        EosId = sp.EndOfSentenceId;
        PadId = padToken != null && sp.Vocabulary.TryGetValue(padToken, out int pad) ? pad : EosId ?? 0;
        AddsBos = addsBos;
    }

    public static SentencePieceTextTokenizer Load(string modelPath, TokenizerSettings settings)
    {
        bool addBos = settings.AddBosToken ?? true; // SentencePiece Llama models add BOS unless told otherwise
        try
        {
            using var stream = File.OpenRead(modelPath);
            return new SentencePieceTextTokenizer(LlamaTokenizer.Create(stream, addBeginOfSentence: addBos, addEndOfSentence: false), addBos, settings.PadToken);
        }
        catch (Exception e) when (e is not CwaException)
        {
            throw new InputException($"{modelPath}: cannot read SentencePiece model ({e.Message.Split('\n')[0]})");
        }
    }

    public int[] Encode(string text) => _sp.EncodeToIds(text).ToArray();

    public string Decode(ReadOnlySpan<int> ids) => _sp.Decode(ids.ToArray());
}
