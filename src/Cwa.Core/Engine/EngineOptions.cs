namespace Cwa.Core.Engine;

/// <summary>Engine knobs. Recompute keeps only each block's input and recomputes the block in backward.</summary>
public sealed record EngineOptions(int Threads = 0, bool Recompute = false)
{
    public int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;
}

/// <summary>Token-weighted evaluation sums: perplexity = exp(SumNll / Tokens).</summary>
public readonly record struct EvalResult(double SumNll, long Tokens, long Correct);
