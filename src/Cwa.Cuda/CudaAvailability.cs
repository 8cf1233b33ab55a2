namespace Cwa.Cuda;

/// <summary>What `--device cuda` can use on this machine, checked before any model is loaded.</summary>
public static class CudaAvailability
{
    /// <summary>
    /// Throws a one-line InputException naming what is missing (driver/GPU or cuBLAS, with the paths tried). The
    /// device-resident backend itself is not finished, so a machine with both still gets a clear message.
    /// </summary>
    public static void RequireBackend(string? cudaLibDir)
    {
        var (_, cublasPath) = CublasLocator.Load(cudaLibDir);
        string gpu;
        try
        {
            using var device = DeviceContext.CreateCuda();
            gpu = device.Accelerator.Name;
        }
        catch (Exception e) when (e is not Core.CwaException)
        {
            throw new Core.InputException($"--device cuda: the CUDA driver could not be initialised ({e.Message.Split('\n')[0]})");
        }
        throw new Core.InputException($"--device cuda: found {gpu} and {cublasPath}, but the CUDA backend is not finished in this build; use --device cpu (see README, GPU)");
    }
}
