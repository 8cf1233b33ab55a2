using Cwa.Core.Sensitivity;

namespace Cwa.Tests.Sensitivity;

public class SensitivityMassTests
{
    private static TensorStats T(string name, int block, string component, long n, double sum) =>
        new(name, block, component, n, sum / n, 0, 0, 0, 0, 0, 0, 0, 0, sum);

    [Fact]
    public void SharesAreRankedAndSumToOne()
    {
        var mass = SensitivityMass.Of([
            T("model.layers.0.mlp.down_proj.weight", 0, "mlp.down_proj", 100, 6),
            T("model.layers.1.mlp.down_proj.weight", 1, "mlp.down_proj", 100, 1),
            T("model.layers.1.self_attn.q_proj.weight", 1, "self_attn.q_proj", 200, 3),
        ]);
        Assert.Equal(["model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"], mass.Tensors.Select(t => t.Key));
        Assert.Equal([0.6, 0.3, 0.1], mass.Tensors.Select(t => t.Share));
        Assert.Equal(1.0, mass.Tensors.Sum(t => t.Share), 12);
        Assert.Equal(0.6 / 0.25, mass.Tensors[0].Density, 12);
        Assert.Equal(("block 0", 0.6), (mass.Blocks[0].Key, mass.Blocks[0].Share));
        Assert.Equal(("mlp.down_proj", 0.7), (mass.Components[0].Key, Math.Round(mass.Components[0].Share, 12)));
        Assert.Equal(0.75, mass.Blocks.Single(b => b.Key == "block 1").WeightShare);
    }
}
