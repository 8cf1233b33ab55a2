using Cwa.Core.Engine;

namespace Cwa.Core.Evaluation;

/// <summary>Token-weighted held-out metrics: NLL per token, perplexity = exp(NLL), top-1 accuracy.</summary>
public sealed record EvalMetrics(double Nll, double Perplexity, double Accuracy, long Tokens)
{
    /// <summary>Each evaluation batch's sums, in order: the units paired statistics compare (one text per batch in perturbation runs).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<EvalResult> Units { get; init; } = [];
}
