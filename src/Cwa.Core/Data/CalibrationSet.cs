using Cwa.Core.Tokenization;

namespace Cwa.Core.Data;

/// <summary>Turns texts into token sequences: seeded shuffle, sample cap, truncation, and batching.</summary>
public static class CalibrationSet
{
    /// <summary>Shuffles deterministically (Fisher-Yates on SplitMix64), keeps maxSamples, tokenizes, truncates.</summary>
    public static IReadOnlyList<int[]> Build(IReadOnlyList<string> texts, ITextTokenizer tokenizer, int maxLength, int maxSamples, ulong seed) =>
        Tokenize(Shuffle(texts.Count, seed).Select(i => texts[i]), tokenizer, maxLength).Take(maxSamples).ToList();

    /// <summary>
    /// Tokenizes lazily in order, truncating to maxLength and dropping sequences shorter than 2 tokens (a single
    /// token has no next-token target). Lazy, so a sample cap stops tokenizing early.
    /// </summary>
    public static IEnumerable<int[]> Tokenize(IEnumerable<string> texts, ITextTokenizer tokenizer, int maxLength)
    {
        foreach (var text in texts)
        {
            var ids = tokenizer.Encode(text);
            if (ids.Length > maxLength) ids = ids[..maxLength];
            if (ids.Length >= 2) yield return ids;
        }
    }

    public static int[] Shuffle(int n, ulong seed)
    {
        var order = Enumerable.Range(0, n).ToArray();
        var rng = new SplitMix64(seed);
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)rng.NextLong(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>Right-padded batches of consecutive sequences, each padded to its own longest row.</summary>
    public static IReadOnlyList<Batch> MakeBatches(IReadOnlyList<int[]> sequences, int batchSize, int padId)
    {
        var batches = new List<Batch>();
        for (int start = 0; start < sequences.Count; start += batchSize)
        {
            var rows = sequences.Skip(start).Take(batchSize).ToList();
            int s = rows.Max(r => r.Length);
            var tokens = new int[rows.Count * s];
            Array.Fill(tokens, padId);
            for (int b = 0; b < rows.Count; b++) rows[b].CopyTo(tokens, b * s);
            batches.Add(new Batch(rows.Count, s, tokens, rows.Select(r => r.Length).ToArray(), padId));
        }
        return batches;
    }

    /// <summary>Disjoint calibration / evaluation split of a user's data file (evaluation must never be calibrated on).</summary>
    public static (IReadOnlyList<string> Calibration, IReadOnlyList<string> Evaluation) Split(IReadOnlyList<string> texts, double evalFraction, ulong seed)
    {
        var order = Shuffle(texts.Count, seed ^ 0x5EED);
        int evalCount = texts.Count < 2 ? 0 : Math.Max(1, (int)(texts.Count * evalFraction));
        var evalSet = order.Take(evalCount).Order().Select(i => texts[i]).ToList();
        var calib = order.Skip(evalCount).Order().Select(i => texts[i]).ToList();
        return (calib, evalSet);
    }
}
