using Cwa.Core.Data;

namespace Cwa.Core.Models;

/// <summary>
/// Useful matrix-product FLOPs of a forward pass (2 per multiply-add): every linear layer including lm_head for
/// each real token, plus attention's QK^T and PV over the causal triangle. Backward costs twice the forward, so
/// forward+backward = 3x. Padding and the masked half of the score matrices are not counted.
/// </summary>
public static class FlopCount
{
    public static double LinearPerToken(ModelConfig c)
    {
        long linear = LlamaLayout.Parameters(c).Where(p => p.Is2D && p.Role != ParameterRole.Embedding).Sum(p => p.NumElements);
        if (c.TieWordEmbeddings) linear += (long)c.VocabSize * c.HiddenSize;
        return linear;
    }

    public static double Forward(ModelConfig c, Batch batch)
    {
        double linear = LinearPerToken(c), flops = 0;
        for (int b = 0; b < batch.BatchSize; b++)
        {
            double len = batch.Lengths[b];
            flops += 2 * len * linear + 2.0 * 2 * c.NumLayers * c.NumHeads * c.HeadDim * len * (len + 1) / 2;
        }
        return flops;
    }

    public static double ForwardBackward(ModelConfig c, Batch batch) => 3 * Forward(c, batch);
}
