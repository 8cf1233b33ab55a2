using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Cwa.Cuda;

/// <summary>
/// Owns the ILGPU context and the accelerator kernels run on: a CUDA GPU when one is usable, otherwise (and in
/// CI, which has no GPU) ILGPU's CPU accelerator, which executes the same kernels so their logic is tested.
/// </summary>
public sealed class DeviceContext : IDisposable
{
    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public bool IsGpu => Accelerator.AcceleratorType == AcceleratorType.Cuda;

    private DeviceContext(Context context, Accelerator accelerator) => (Context, Accelerator) = (context, accelerator);

    /// <summary>
    /// ILGPU's CPU accelerator with groups of 4 (2 warps of 2), one multiprocessor per core: groups still exercise
    /// the shared-memory reductions, and the emulation costs about 5x less per element than its default 16-thread groups.
    /// </summary>
    public static DeviceContext CreateCpu()
    {
        var device = new CPUDevice(2, 2, Math.Clamp(Environment.ProcessorCount, 1, 8));
        // MathMode.Default keeps double arithmetic 64-bit (the score statistics accumulate in double).
        var context = Context.Create(b => b.CPU(device).Math(MathMode.Default));
        return new DeviceContext(context, context.CreateCPUAccelerator(0));
    }

    /// <summary>The first CUDA device, or a clear error naming what was missing.</summary>
    public static DeviceContext CreateCuda()
    {
        // Fast maps exp/log to the GPU's approximate instructions (as CUDA's __expf), keeping doubles 64-bit.
        var context = Context.Create(b => b.Cuda().Math(MathMode.Fast));
        var devices = context.GetCudaDevices();
        if (devices.Count == 0)
        {
            context.Dispose();
            throw new Core.CwaException("--device cuda: no CUDA device found (is the NVIDIA driver installed and libcuda.so on the library path?)");
        }
        return new DeviceContext(context, devices[0].CreateAccelerator(context));
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}
