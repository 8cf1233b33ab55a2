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

    /// <summary>
    /// Bytes a layer-streamed run needs at its peak: one block's fp32 weights and gradient sums (three buffers with
    /// per-batch sums), the embedding/lm_head sums and scores while those are scored, one block's activations for one
    /// batch, a logits tile, and the saved hidden states of every batch when they stay in memory (HiddenBytes).
    /// </summary>
    public static MemoryEstimate ForStreaming(ModelConfig c, int batch, int seqLen, bool needGradients, bool perBatch, long totalTokens, bool hiddenInMemory)
    {
        var specs = LlamaLayout.Parameters(c);
        long block = specs.Where(s => s.Block == 0).Sum(s => s.NumElements) * 4;
        long small = specs.Where(s => !s.Is2D).Sum(s => s.NumElements) * 4;
        long vocab = (long)c.VocabSize * c.HiddenSize * 4;
        long weights = block + small + 4096L * c.HiddenSize * 4;
        // Peak of the gradient side: a block's sums, or while the head is scored its sums plus a score buffer (Fisher
        // scores replace the Fisher sums in place); a tied embedding's sums stay through the blocks.
        long blockSums = needGradients ? block * (perBatch ? 3 : 1) : 0;
        long vocabSums = needGradients ? vocab * (perBatch ? 2 : 2) : vocab;
        long gradients = Math.Max(blockSums + (c.TieWordEmbeddings && needGradients ? vocab : 0), vocabSums);
        long n = (long)batch * seqLen;
        long perBlock = n * (6L * c.HiddenSize + 3L * c.IntermediateSize + 2L * c.QDim + 2L * c.KvDim) + (long)batch * c.NumHeads * seqLen * seqLen;
        long scratch = n * (2L * c.HiddenSize + 3L * c.IntermediateSize + 2L * c.QDim + 2L * c.KvDim);
        long activations = 4 * (perBlock + scratch + 4 * n * c.HiddenSize) + (hiddenInMemory ? HiddenBytes(c, totalTokens, needGradients) : 0);
        return new MemoryEstimate(weights, gradients, activations, 4 * (1L << 24));
    }

    /// <summary>The saved hidden states of a layer-major pass: every block's input and the gradient, for every token.</summary>
    public static long HiddenBytes(ModelConfig c, long totalTokens, bool needGradients) =>
        (c.NumLayers + 1 + (needGradients ? 1 : 0)) * totalTokens * c.HiddenSize * 4;

    /// <summary>Refuses up front, with the numbers, instead of being killed by the OOM killer half way through.</summary>
    public void EnsureFits(string where, long availableBytes, string fix = "try --recompute, a smaller --batch-size or a shorter --max-length")
    {
        if (availableBytes <= 0 || Total <= availableBytes) return;
        throw new CwaException($"{where}: {Describe()} but only {Format(availableBytes)} is available; {fix}");
    }

    public string Describe() => $"an analyze run needs about {Format(Total)} (weights {Format(Weights)}, gradients {Format(Gradients)}, " +
        $"activations {Format(Activations)}, logits {Format(Logits)})";

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
