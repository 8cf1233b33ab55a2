namespace Cwa.Core.Evaluation;

/// <summary>Token-weighted held-out metrics: NLL per token, perplexity = exp(NLL), top-1 accuracy.</summary>
public sealed record EvalMetrics(double Nll, double Perplexity, double Accuracy, long Tokens);
