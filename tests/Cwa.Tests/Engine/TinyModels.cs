using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Tests.Engine;

/// <summary>Configurations and batches small enough for finite differences in double precision.</summary>
internal static class TinyModels
{
    public static ModelConfig Config(bool tied = false, bool gqa = true, bool bias = false, bool llama3Rope = false) => new()
    {
        ModelType = bias ? "qwen2" : "llama",
        VocabSize = 23,
        HiddenSize = 16,
        IntermediateSize = 24,
        NumLayers = 2,
        NumHeads = 4,
        NumKvHeads = gqa ? 2 : 4,
        HeadDim = 4,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        RopeScaling = llama3Rope ? new RopeScaling("llama3", 8, 1, 4, 4) : null,
        TieWordEmbeddings = tied,
        AttentionBias = bias,
    };

    public static Batch Single(int seqLen = 7, ulong seed = 1) => Make([seqLen], seed);

    /// <summary>Three rows of different lengths, right-padded with token 0.</summary>
    public static Batch Padded(ulong seed = 2) => Make([6, 3, 5], seed);

    public static Batch Make(int[] lengths, ulong seed, int vocab = 23)
    {
        int s = lengths.Max();
        var tokens = new int[lengths.Length * s];
        var rng = new SplitMix64(seed);
        for (int b = 0; b < lengths.Length; b++)
            for (int t = 0; t < lengths[b]; t++)
                tokens[b * s + t] = (int)rng.NextLong(vocab);
        return new Batch(lengths.Length, s, tokens, lengths);
    }
}
