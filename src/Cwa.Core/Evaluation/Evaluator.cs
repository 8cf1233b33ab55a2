using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Pipeline;

namespace Cwa.Core.Evaluation;

/// <summary>Measures NLL, perplexity and accuracy over held-out batches, weighting every target token equally.</summary>
public static class Evaluator
{
    public static EvalMetrics Run(IBackend backend, IReadOnlyList<Batch> batches, IPhaseProgress? progress = null)
    {
        var units = backend.EvaluateEach(batches, progress);
        double sumNll = 0;
        long tokens = 0, correct = 0;
        foreach (var u in units) (sumNll, tokens, correct) = (sumNll + u.SumNll, tokens + u.Tokens, correct + u.Correct);
        if (tokens == 0)
            throw new InputException("evaluation texts have no next-token targets (every text is shorter than 2 tokens)");
        double nll = sumNll / tokens;
        return new EvalMetrics(nll, Math.Exp(nll), (double)correct / tokens, tokens) { Units = units };
    }
}
