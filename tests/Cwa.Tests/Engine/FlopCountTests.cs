using Cwa.Core.Data;
using Cwa.Core.Models;

namespace Cwa.Tests.Engine;

public class FlopCountTests
{
    [Fact]
    public void CountsLinearLayersPerRealTokenAndTheCausalTriangle()
    {
        var c = TinyModels.Config();
        // q, k, v, o, gate, up, down per layer plus lm_head, for every real token.
        double linear = c.NumLayers * ((double)c.HiddenSize * (c.QDim + 2 * c.KvDim) + c.QDim * c.HiddenSize + 3.0 * c.HiddenSize * c.IntermediateSize)
            + (double)c.VocabSize * c.HiddenSize;
        Assert.Equal(linear, FlopCount.LinearPerToken(c));
        Assert.Equal(linear, FlopCount.LinearPerToken(c with { TieWordEmbeddings = true }));
        var batch = new Batch(2, 5, new int[10], [5, 2]);
        double attention = 2.0 * 2 * c.NumLayers * c.NumHeads * c.HeadDim * (5 * 6 / 2 + 2 * 3 / 2);
        Assert.Equal(2 * 7 * linear + attention, FlopCount.Forward(c, batch));
        Assert.Equal(3 * FlopCount.Forward(c, batch), FlopCount.ForwardBackward(c, batch));
    }
}
