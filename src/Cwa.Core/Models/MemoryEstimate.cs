namespace Cwa.Core.Models;

/// <summary>
/// Bytes an analyze run needs on the CPU backend: fp32 weights and gradients, the activations one
/// forward/backward keeps (per block: about 9 hidden-sized, 3 ffn-sized and 4 q/kv-sized rows per token, plus the
/// attention probabilities), backward scratch, and one chunk of logits.
/// </summary>
public sealed record MemoryEstimate(long Weights, long Gradients, long Activations, long Logits)
{
    public long Total => Weights + Gradients + Activations + Logits;

    public static MemoryEstimate ForAnalysis(ModelConfig c, int batch, int seqLen, bool needGradients = true, bool recompute = false)
    {
        long n = (long)batch * seqLen;
        long weights = LlamaLayout.ParameterCount(c) * 4;
        long perBlock = n * (6L * c.HiddenSize + 3L * c.IntermediateSize + 2L * c.QDim + 2L * c.KvDim) + (long)batch * c.NumHeads * seqLen * seqLen;
        long scratch = n * (2L * c.HiddenSize + 3L * c.IntermediateSize + 2L * c.QDim + 2L * c.KvDim);
        long blocks = needGradients && !recompute ? c.NumLayers : 1;
        long activations = 4 * (perBlock * blocks + scratch + (recompute ? n * c.HiddenSize * c.NumLayers : 0));
        long logits = 4 * Math.Min(n * c.VocabSize, (1L << 24) + c.VocabSize) * 2;
        return new MemoryEstimate(weights, needGradients ? weights : 0, activations, logits);
    }

    /// <summary>Refuses up front, with the numbers, instead of being killed by the OOM killer half way through.</summary>
    public void EnsureFits(string where, long availableBytes)
    {
        if (availableBytes <= 0 || Total <= availableBytes) return;
        throw new CwaException($"{where}: an analyze run needs about {Format(Total)} (weights {Format(Weights)}, gradients {Format(Gradients)}, " +
            $"activations {Format(Activations)}, logits {Format(Logits)}) but only {Format(availableBytes)} is available; " +
            "try --recompute, a smaller --batch-size or a shorter --max-length");
    }

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
