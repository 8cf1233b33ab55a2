using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;
using Cwa.Core.Perturbation;
using Cwa.Core.Pipeline;
using Cwa.Cuda;
using Cwa.Tests.EndToEnd;

namespace Cwa.Tests.Cuda;

/// <summary>quantize through the device backend (ILGPU's CPU accelerator): the same grid values as on the CPU, restored bit-exactly.</summary>
public sealed class DeviceQuantizeTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void DeviceAndCpuQuantiseToTheSameValuesAndRestoreExactly()
    {
        using var cpu = LoadedModel.Open(tiny.Model, "f32", "cpu", new EngineOptions(2), new NullProgress());
        using var dev = LoadedModel.Open(tiny.Model, "f32", "cuda", new EngineOptions(2), new NullProgress(), null, DeviceBackendFactory.CpuAccelerator());
        int t = Enumerable.Range(0, cpu.Backend.Specs.Count).First(i => cpu.Backend.Specs[i].Name.EndsWith("layers.1.mlp.down_proj.weight"));
        long n = cpu.Backend.Specs[t].NumElements;
        var selection = new List<TensorSelection> { new(t, Enumerable.Range(0, 300).Select(i => (long)i * 37 % n).Distinct().Order().ToArray()) };
        var settings = new PerturbationSettings(PerturbationKind.Quantize, HeldType: DType.F32, QuantBits: 3, QuantGroup: 32);

        float[] Read(LoadedModel m)
        {
            var w = new float[n];
            m.Backend.ReadWeight(t, w);
            return w;
        }
        var original = Read(cpu);
        Assert.Equal(original, Read(dev));
        var a = WeightPerturber.Apply(cpu.Backend, selection, settings);
        var b = WeightPerturber.Apply(dev.Backend, selection, settings);
        var quantised = Read(cpu);
        Assert.NotEqual(original, quantised);
        Assert.Equal(quantised, Read(dev));
        WeightPerturber.Restore(cpu.Backend, a);
        WeightPerturber.Restore(dev.Backend, b);
        Assert.Equal(original, Read(dev));
    }
}
