namespace Cwa.Core.Models;

/// <summary>
/// Bytes an analyze run needs on the CPU, at its peak, from the engine's own buffer sizes: fp32 weights and gradients
/// (four model-sized arrays with per-batch gradients: the backend's, the read-back batch, the sum, the Fisher sum),
/// the activations the backward keeps (LayerCache per block), the backward scratch and per-batch arrays, the loss
/// head's tiles, and the .NET runtime itself. Checked against measured peaks of anonymous memory in tests.
/// </summary>
public sealed record MemoryEstimate(long Weights, long Gradients, long Activations, long Logits, long Runtime = MemoryEstimate.RuntimeBytes)
{
    /// <summary>The runtime, libraries and plotting of a run whose model is negligible (measured: 20-31 MiB, tiny preset).</summary>
    public const long RuntimeBytes = 32L << 20;

    public long Total => Weights + Gradients + Activations + Logits + Runtime;

    public static MemoryEstimate ForAnalysis(ModelConfig c, int batch, int seqLen, bool needGradients = true, bool recompute = false, bool perBatch = false)
    {
        long n = (long)batch * seqLen;
        long weights = LlamaLayout.ParameterCount(c) * 4;
        long blocks = needGradients && !recompute ? c.NumLayers : 1;
        long activations = blocks * BlockCache(c, batch, seqLen) + Scratch(c, n) + BatchArrays(c, n) + (recompute ? 4 * n * c.HiddenSize * c.NumLayers : 0);
        return new MemoryEstimate(weights, needGradients ? weights * (perBatch ? 4 : 1) : 0, activations, HeadBuffers(c, n, needGradients));
    }

    /// <summary>
    /// Bytes a layer-streamed run needs at its peak: one block's fp32 weights, and the larger of a block's gradient
    /// sums (three buffers with per-batch sums) with its scores, or the embedding/lm_head sums with their scores (a
    /// tied embedding's sums stay through the blocks); one block's activations for one batch, the loss head's tiles,
    /// the saved hidden states of every batch when they stay in memory (<see cref="HiddenBytes"/>), and the kept
    /// products of a gradient pass (all of them in memory, or the staging memory of their scratch file).
    /// mappedWeights: the products read the block's matrices as mapped bf16 (<see cref="Engine.StreamedWeights.ReadsMapped"/>),
    /// so a gradient pass holds no widened block, only the buffers scoring widens one tensor into.
    /// scoresInPlace: with per-batch sums, the scores overwrite the Fisher sums (fisher, obd).
    /// </summary>
    public static MemoryEstimate ForStreaming(ModelConfig c, int batch, int seqLen, bool needGradients, bool perBatch, long totalTokens, bool hiddenInMemory,
        bool keptInMemory = false, bool mappedWeights = false, bool scoresInPlace = false)
    {
        var specs = LlamaLayout.Parameters(c);
        var blockSpecs = specs.Where(s => s.Block == 0 && s.Is2D).ToList();
        long block = blockSpecs.Sum(s => s.NumElements) * 4, largest = blockSpecs.Max(s => s.NumElements) * 4;
        long blockWeights = mappedWeights && needGradients ? Engine.StreamedWeights.ScoringBufferBytes(c) : block;
        long small = specs.Where(s => !s.Is2D).Sum(s => s.NumElements) * 4;
        long vocab = (long)c.VocabSize * c.HiddenSize * 4;
        long weights = small + Math.Min(c.VocabSize, 4096) * (long)c.HiddenSize * 4;
        long n = (long)batch * seqLen;
        // While blocks run: a block's weights, its sums and one tensor's scores (a tied embedding's sums stay too).
        // Per-batch sums are a total and squares, plus a batch buffer only where a batch is deeper than the weight
        // gradient's one SGEMM step (the products fold the rest from their cache, see CpuBlockEngine.BackwardBlock).
        long sums = !needGradients ? 0 : !perBatch ? block : block * (n > Engine.Sgemm.KCSingle ? 3 : 2);
        long blockPhase = blockWeights + sums + largest + (c.TieWordEmbeddings && needGradients ? vocab : 0);
        // While lm_head or the embedding is scored (no block resident): sums, scores, and the 1024 rows being scored.
        // Scores written over the Fisher sums need no vocabulary-sized array: the scorer keeps its block-sized one
        // (measured at 8B: 6.02-6.32 GiB for fisher, which the vocabulary-sized scores had planned at 7.89).
        long scores = scoresInPlace && perBatch && needGradients ? largest : vocab;
        long vocabPhase = (needGradients ? vocab * (perBatch ? 2 : 1) : 0) + scores + 3L * Math.Min(c.VocabSize, 1024) * c.HiddenSize * 4;
        long activations = BlockCache(c, batch, seqLen) + Scratch(c, n) + BatchArrays(c, n) + 2 * 4 * n * c.HiddenSize
            + (hiddenInMemory ? HiddenBytes(c, totalTokens, needGradients) : 0)
            + (!needGradients ? 0 : keptInMemory ? KeptBytes(c, totalTokens) : KeptStagingBytes(n, Engine.LayerCache<float>.KeptPerRow(c)));
        // Reported as the larger phase: its block weights (if any) as weights, the rest as gradients and scores.
        return blockPhase >= vocabPhase
            ? new MemoryEstimate(weights + blockWeights, blockPhase - blockWeights, activations, HeadBuffers(c, n, needGradients))
            : new MemoryEstimate(weights, vocabPhase, activations, HeadBuffers(c, n, needGradients));
    }

    /// <summary>The saved hidden states of a layer-major pass: every block's input and the gradient, for every token.</summary>
    public static long HiddenBytes(ModelConfig c, long totalTokens, bool needGradients) =>
        (c.NumLayers + 1 + (needGradients ? 1 : 0)) * totalTokens * c.HiddenSize * 4;

    /// <summary>
    /// The product outputs a layer-major gradient pass keeps from the forward for the backward (q, k, v, the
    /// attention residual, gate and up of every block and token), so that the backward need not recompute them.
    /// </summary>
    public static long KeptBytes(ModelConfig c, long totalTokens) =>
        (long)c.NumLayers * totalTokens * Engine.LayerCache<float>.KeptPerRow(c) * 4;

    /// <summary>
    /// Staging memory of kept products that go to a scratch file: one batch's slot, so that a block's writes for one
    /// batch reach the disk while the next batch computes (<see cref="Engine.BackgroundFileWriter"/>); at most 256 MiB.
    /// </summary>
    public static long KeptStagingBytes(long rowsPerBatch, int perRow) => Math.Min(256L << 20, rowsPerBatch * perRow * 4);

    /// <summary>
    /// Whether the kept products stay in process memory: only when they are small beside what the budget leaves
    /// after the hidden states. Otherwise they go to a scratch file, written past the page cache where the file system
    /// allows (at 8B they are 7 GB, which belong there rather than in the process's anonymous memory).
    /// </summary>
    public static bool KeepsInMemory(long keptBytes, long hiddenBytes, long budget) => keptBytes <= Math.Max(0, budget - hiddenBytes) / 4;

    /// <summary>What one block keeps for its backward (LayerCache): 4 hidden, 2 q, 2 kv, 3 ffn values and 2 norms per token, plus attention probabilities.</summary>
    private static long BlockCache(ModelConfig c, int batch, int seqLen) =>
        4 * ((long)batch * seqLen * (4L * c.HiddenSize + 2L * c.QDim + 2L * c.KvDim + 3L * c.IntermediateSize + 2) + (long)batch * c.NumHeads * seqLen * seqLen);

    /// <summary>The backward's scratch shared by all blocks (BlockScratch).</summary>
    private static long Scratch(ModelConfig c, long n) => 4 * n * (c.HiddenSize + 3L * c.IntermediateSize + 2L * c.QDim + 2L * c.KvDim);

    /// <summary>Hidden-sized arrays of one batch: embedding output, gradient, final-norm output and its gradient.</summary>
    private static long BatchArrays(ModelConfig c, long n) => 4 * n * (4L * c.HiddenSize + 1);

    /// <summary>The loss head's logits tile, gathered rows and row gradients, and the logits a backward keeps.</summary>
    private static long HeadBuffers(ModelConfig c, long n, bool needGradients)
    {
        long vc = Math.Min(c.VocabSize, 4096), rc = Math.Min(n, (1L << 24) / vc);
        return 4 * (rc * vc + rc * c.HiddenSize + n * c.HiddenSize + 5 * n) + (needGradients ? Engine.LossHead<float>.KeptLogitsBytes(n, c.VocabSize) : 0);
    }

    /// <summary>Refuses up front, with the numbers, instead of being killed by the OOM killer half way through.</summary>
    public void EnsureFits(string where, long availableBytes, string fix = "try --recompute, a smaller --batch-size or a shorter --max-length")
    {
        if (availableBytes <= 0 || Total <= availableBytes) return;
        throw new CwaException($"{where}: {Describe()} but only {Format(availableBytes)} is available; {fix}");
    }

    public string Describe() => $"an analyze run needs about {Format(Total)} (weights {Format(Weights)}, gradients {Format(Gradients)}, " +
        $"activations {Format(Activations)}, logits {Format(Logits)}, runtime {Format(Runtime)})";

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
