using Cwa.Core;
using Cwa.Cuda;

namespace Cwa.Tests.Cuda;

/// <summary>Base of the kernel tests: ILGPU's CPU accelerator with the host-array runner, and shared helpers.</summary>
public abstract class AcceleratorTest : IDisposable
{
    private readonly DeviceContext _device = DeviceContext.CreateCpu();
    private protected readonly KernelRunner Run;

    protected AcceleratorTest() => Run = new KernelRunner(_device);

    protected static float[] Rand(ulong seed, int n, double scale = 1)
    {
        var r = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(scale * r.NextGaussian())).ToArray();
    }

    public void Dispose()
    {
        Run.Dispose();
        _device.Dispose();
        GC.SuppressFinalize(this);
    }
}
