using Cwa.Core.Data;

namespace Cwa.Core.Engine;

/// <summary>
/// The real tokens of a right-padded batch packed back to back: sequence b occupies rows Start[b] ..
/// Start[b] + Lengths[b], row r holds token Tokens[r] at position Positions[r].
/// </summary>
internal sealed class PackedRows
{
    public required int[] Start { get; init; }
    public required int[] Tokens { get; init; }
    public required int[] Positions { get; init; }
    public int Count => Tokens.Length;

    public static PackedRows Of(Batch batch)
    {
        var start = new int[batch.BatchSize];
        int n = 0;
        for (int b = 0; b < batch.BatchSize; b++)
        {
            start[b] = n;
            n += Math.Max(0, batch.Lengths[b]);
        }
        var tokens = new int[n];
        var positions = new int[n];
        for (int b = 0; b < batch.BatchSize; b++)
            for (int t = 0; t < batch.Lengths[b]; t++)
            {
                tokens[start[b] + t] = batch.Token(b, t);
                positions[start[b] + t] = t;
            }
        return new PackedRows { Start = start, Tokens = tokens, Positions = positions };
    }

    /// <summary>Packed rows that predict a next token, and those tokens, in row order.</summary>
    public (int[] Rows, int[] Targets) Targets(Batch batch)
    {
        var (padded, targets) = batch.TargetPositions();
        var rows = new int[padded.Length];
        for (int i = 0; i < padded.Length; i++)
        {
            int b = padded[i] / batch.SeqLen, t = padded[i] % batch.SeqLen;
            rows[i] = Start[b] + t;
        }
        return (rows, targets);
    }
}
