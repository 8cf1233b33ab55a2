namespace Cwa.Core.Data;

/// <summary>
/// A right-padded batch of token sequences, row-major [BatchSize, SeqLen].
/// Lengths[b] real tokens in row b; positions at or past it hold PadId and are ignored.
/// Next-token targets exist for positions t &lt; Lengths[b]-1.
/// </summary>
public sealed record Batch(int BatchSize, int SeqLen, int[] Tokens, int[] Lengths, int PadId = 0)
{
    public int Token(int b, int t) => Tokens[b * SeqLen + t];

    /// <summary>Number of next-token targets (sum over rows of Lengths[b]-1, at least 0 each).</summary>
    public int TargetCount => Lengths.Sum(l => Math.Max(0, l - 1));

    /// <summary>Flat row (b * SeqLen + t) and next token of every target position, in row order.</summary>
    public (int[] Rows, int[] Targets) TargetPositions()
    {
        var rows = new int[TargetCount];
        var targets = new int[rows.Length];
        int i = 0;
        for (int b = 0; b < BatchSize; b++)
            for (int t = 0; t + 1 < Lengths[b]; t++, i++)
            {
                rows[i] = b * SeqLen + t;
                targets[i] = Tokens[b * SeqLen + t + 1];
            }
        return (rows, targets);
    }
}
