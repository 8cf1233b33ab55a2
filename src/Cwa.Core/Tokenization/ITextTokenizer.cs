namespace Cwa.Core.Tokenization;

/// <summary>Plain (chat-free) text encoding as the model saw it in pre-training, with the model's BOS policy.</summary>
public interface ITextTokenizer
{
    int VocabSize { get; }
    int? BosId { get; }
    int? EosId { get; }
    /// <summary>Padding id: the pad token, else EOS, else 0. Padded positions are masked, so any valid id works.</summary>
    int PadId { get; }
    bool AddsBos { get; }
    int[] Encode(string text);
    string Decode(ReadOnlySpan<int> ids);
}
