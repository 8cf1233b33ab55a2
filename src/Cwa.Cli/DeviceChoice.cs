using Cwa.Core.Pipeline;

namespace Cwa.Cli;

/// <summary>
/// Maps --device to what LoadedModel opens. `ilgpu-cpu` runs the CUDA backend's own code (kernels, device
/// forward/backward, device scoring) on ILGPU's CPU accelerator: slow, but it checks a build's device path,
/// the published single-file binary included, on a machine without a GPU.
/// </summary>
internal static class DeviceChoice
{
    public static (string Device, IDeviceBackendFactory Gpu) Resolve(string device, string? cudaLibDir) =>
        device == "ilgpu-cpu" ? ("cuda", Cuda.DeviceBackendFactory.CpuAccelerator()) : (device, Cuda.DeviceBackendFactory.Cuda(cudaLibDir));
}
