using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Pipeline;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Evaluation;

/// <summary>
/// acc: share of items whose right choice has the highest log-likelihood; acc_norm: the same with the log-likelihood
/// per UTF-8 byte of the choice (lm-eval-harness's definitions); for last-word items acc is the exact match of the
/// greedy continuation over all of the word's tokens and TargetNll the word's mean NLL per token.
/// </summary>
public sealed record TaskResult(string Task, string Kind, int Items, int Skipped, double Accuracy, double? AccuracyNorm, double? TargetNll);

/// <summary>Task sets to score a model on, with the tokenizer and length limit they are scored with.</summary>
public sealed record TaskSuite(IReadOnlyList<TaskSet> Sets, Tokenization.ITextTokenizer Tokenizer, int MaxLength)
{
    /// <param name="progress">a phase per task set when given (cwa eval); perturbation runs score tasks inside their own phase</param>
    public IReadOnlyList<TaskResult> Run(IBackend backend, IProgressSink? progress = null) => Sets.Select(s =>
    {
        using var phase = progress?.Start($"task {s.Name}", s.Items.Sum(i => 1 + i.Choices.Count));
        return TaskEvaluator.Run(backend, Tokenizer, s, MaxLength, phase);
    }).ToList();
}

/// <summary>
/// Scores task items with the model as it is (so a perturbed model can be scored too). A continuation is tokenized on
/// its own and appended to the context's tokens (as lm-eval-harness does), so the context's tokens are the same in
/// every choice; its log-likelihood is the NLL of context + continuation minus that of the context alone, and its
/// greedy exact match compares the top-1 hits the same way. One sequence per evaluation batch.
/// </summary>
public static class TaskEvaluator
{
    public static TaskResult Run(IBackend backend, ITextTokenizer tok, TaskSet set, int maxLength, IPhaseProgress? progress = null)
    {
        var sequences = new List<int[]>();
        var plan = new List<(int Context, int[] Choices, int[] ContinuationLengths, int[] Bytes, int Label)>();
        int skipped = 0;
        foreach (var item in set.Items)
        {
            var ctx = tok.Encode(item.Context);
            var conts = item.Choices.Select(c => Continuation(tok, c)).ToList();
            if (ctx.Length < 1 || conts.Any(c => c.Length == 0) || conts.Max(c => ctx.Length + c.Length) > maxLength) { skipped++; continue; }
            int ctxAt = sequences.Count;
            sequences.Add(ctx);
            var at = new int[conts.Count];
            for (int c = 0; c < conts.Count; c++)
            {
                at[c] = sequences.Count;
                sequences.Add([.. ctx, .. conts[c]]);
            }
            plan.Add((ctxAt, at, conts.Select(c => c.Length).ToArray(), item.Choices.Select(c => System.Text.Encoding.UTF8.GetByteCount(c)).ToArray(), item.Label));
        }
        if (plan.Count == 0)
            throw new InputException($"task {set.Name}: no item fits --max-length {maxLength} tokens");
        var batches = CalibrationSet.MakeBatches(sequences, 1, tok.PadId);
        var results = backend.EvaluateEach(batches, progress);
        int right = 0, rightNorm = 0;
        double nll = 0;
        long nllTokens = 0;
        foreach (var (ctxAt, at, lengths, bytes, label) in plan)
        {
            var ctx = results[ctxAt];
            if (set.Kind == TaskKind.LastWord)
            {
                var full = results[at[0]];
                if (full.Correct - ctx.Correct == lengths[0]) right++;
                nll += full.SumNll - ctx.SumNll;
                nllTokens += lengths[0];
                continue;
            }
            var loglik = at.Select(i => -(results[i].SumNll - ctx.SumNll)).ToArray();
            if (ArgMax(loglik) == label) right++;
            if (ArgMax(loglik.Select((l, c) => l / Math.Max(1, bytes[c])).ToArray()) == label) rightNorm++;
        }
        bool mc = set.Kind == TaskKind.MultipleChoice;
        return new TaskResult(set.Name, mc ? "multiple_choice" : "last_word", plan.Count, skipped, (double)right / plan.Count,
            mc ? (double)rightNorm / plan.Count : null, mc ? null : nll / nllTokens);
    }

    /// <summary>The continuation's own tokens (without the BOS the tokenizer adds to a text).</summary>
    private static int[] Continuation(ITextTokenizer tok, string text)
    {
        var ids = tok.Encode(text);
        return tok.AddsBos && ids.Length > 0 && ids[0] == tok.BosId ? ids[1..] : ids;
    }

    /// <summary>First index of the largest value (ties go to the earlier choice, deterministically).</summary>
    private static int ArgMax(double[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
