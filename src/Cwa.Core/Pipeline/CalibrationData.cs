using Cwa.Core.Data;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Pipeline;

/// <summary>
/// Calibration and held-out texts. With --data-file and no --eval-file a fixed 20% of the file is held out (split
/// by a fixed seed, not the run's seed, so every seed evaluates on the same texts); without --data-file the
/// built-in corpus's fixed split is used. Calibration and evaluation texts never overlap.
/// </summary>
public sealed class CalibrationData
{
    public required string Source { get; init; }
    public required IReadOnlyList<string> CalibrationTexts { get; init; }
    public required IReadOnlyList<string> EvaluationTexts { get; init; }

    public static CalibrationData Load(AnalyzeRequest r)
    {
        if (r.DataFile == null)
            return new CalibrationData
            {
                Source = BuiltInCorpus.SourceName,
                CalibrationTexts = BuiltInCorpus.Calibration,
                EvaluationTexts = r.EvalFile != null ? TextSource.Read(r.EvalFile, r.TextField) : BuiltInCorpus.Evaluation,
            };
        var texts = TextSource.Read(r.DataFile, r.TextField);
        var (calib, eval) = r.EvalFile != null ? (texts, TextSource.Read(r.EvalFile, r.TextField)) : CalibrationSet.Split(texts, 0.2, 1234);
        return new CalibrationData { Source = Path.GetFullPath(r.DataFile), CalibrationTexts = calib, EvaluationTexts = eval };
    }

    /// <summary>Seeded sample of calibration sequences, batched.</summary>
    public IReadOnlyList<Batch> CalibrationBatches(ITextTokenizer tok, AnalyzeRequest r, ulong seed, IReadOnlyList<string>? subset = null)
    {
        var seqs = CalibrationSet.Build(subset ?? CalibrationTexts, tok, r.MaxLength, r.MaxSamples, seed);
        if (seqs.Count == 0)
            throw new InputException($"{Source}: no calibration text has at least 2 tokens after tokenization");
        return CalibrationSet.MakeBatches(seqs, r.BatchSize, tok.PadId);
    }

    /// <summary>All held-out texts in file order (no sampling: the evaluation set is the same for every run).</summary>
    /// <param name="batchSize">texts per batch (default --batch-size); analyze evaluates one text per batch so paired statistics are per text</param>
    public IReadOnlyList<Batch> EvaluationBatches(ITextTokenizer tok, AnalyzeRequest r, int? batchSize = null)
    {
        var seqs = CalibrationSet.Tokenize(EvaluationTexts, tok, r.MaxLength).ToList();
        if (seqs.Count == 0)
            throw new InputException($"{Source}: no evaluation text has at least 2 tokens after tokenization");
        return CalibrationSet.MakeBatches(seqs, batchSize ?? r.BatchSize, tok.PadId);
    }
}
