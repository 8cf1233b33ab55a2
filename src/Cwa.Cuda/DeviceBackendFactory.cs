using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Cuda.Engine;
using Cwa.Cuda.Gemm;
using ILGPU.Runtime.Cuda;

namespace Cwa.Cuda;

/// <summary>
/// Opens the device backend for LoadedModel: on a CUDA GPU with cuBLAS (`--device cuda`, or `auto` when both are
/// found), or on ILGPU's CPU accelerator with the fallback GEMM, which is how the tests run the whole device path.
/// </summary>
public sealed class DeviceBackendFactory : IDeviceBackendFactory
{
    private readonly Func<string?> _unavailable;
    private readonly Func<DType, (DeviceContext, IDeviceGemm)> _open;
    private readonly long _logitsChunk;

    private DeviceBackendFactory(Func<string?> unavailable, Func<DType, (DeviceContext, IDeviceGemm)> open, long logitsChunk)
    {
        _unavailable = unavailable;
        _open = open;
        _logitsChunk = logitsChunk;
    }

    public static DeviceBackendFactory Cuda(string? cudaLibDir) => new(() => CudaUnavailable(cudaLibDir), held =>
    {
        var (library, path) = CublasLocator.Load(cudaLibDir);
        var device = DeviceContext.CreateCuda();
        try
        {
            // fp32 models get exact fp32 products (they are the reference runs); half models may use TF32 in attention.
            return (device, new CublasGemm(new CublasApi(library, path), (CudaAccelerator)device.Accelerator, tf32ForFloat: held != DType.F32));
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }, CudaBackend.DefaultLogitsChunk);

    /// <summary>The device path on ILGPU's CPU accelerator (slow; for tests). A small logits chunk exercises chunking.</summary>
    public static DeviceBackendFactory CpuAccelerator(long logitsChunk = CudaBackend.DefaultLogitsChunk) => new(() => null, _ =>
    {
        var device = DeviceContext.CreateCpu();
        return (device, new FallbackGemm(device.Accelerator));
    }, logitsChunk);

    public string? Unavailable() => _unavailable();

    public IBackend Create(CheckpointFolder checkpoint, DType held, EngineOptions options, Workload? workload, IProgressSink progress, DeviceStreaming? streaming = null)
    {
        var (device, gemm) = _open(held);
        var format = StorageFormats.Of(held);
        IBackend? backend = null;
        try
        {
            var w = workload ?? new Workload(1, 16, false);
            var shape = new WorkspaceShape(w.Batch, w.SeqLen, w.Gradients, options.Recompute, _logitsChunk);
            var plan = DeviceMemoryPlan.For(device.Accelerator.Name, checkpoint.Config, format, shape, device.Accelerator.MemorySize);
            string mode = streaming?.Mode ?? "off";
            bool stream = mode == "on" || mode == "auto" && workload != null && !plan.Fits;
            if (stream)
            {
                var streamed = DeviceMemoryPlan.ForStreaming(device.Accelerator.Name, checkpoint.Config, format, shape, w.PerBatch, device.Accelerator.MemorySize);
                progress.Info(streamed.Describe() + (mode == "auto" ? $" (the whole model would need {MemoryEstimate.Format(plan.Total)})" : ""));
                streamed.EnsureFits();
                streaming?.EnsureHostFits(checkpoint.Directory, streamed: true, w.Gradients);
                var weights = new StreamedWeights(checkpoint, held);
                var engine = new DeviceBlockEngine(device, gemm, weights, format, options, _logitsChunk);
                backend = new StreamedBackend(weights, engine, streaming?.HiddenBudget ?? long.MaxValue, streaming?.ScratchDir);
            }
            else
            {
                if (workload != null)
                {
                    progress.Info(plan.Describe());
                    plan.EnsureFits();
                    streaming?.EnsureHostFits(checkpoint.Directory, streamed: false, w.Gradients);
                }
                using var phase = progress.Start("reading weights", LlamaLayout.Parameters(checkpoint.Config).Count);
                backend = CudaBackend.FromCheckpoint(device, gemm, checkpoint, held, options, _logitsChunk, name => { phase.Describe(name); phase.Advance(); });
            }
            if (workload is { } wl) backend.Reserve(wl);
            progress.Info($"device: {device.Accelerator.Name}; matrix products: {gemm.Name}; weights held as {format.ToString().ToLowerInvariant()}" +
                (stream ? "; layer streaming (one block on the device at a time)" : ""));
            return backend;
        }
        catch (Exception e)
        {
            string name = device.Accelerator.Name;
            if (backend != null) backend.Dispose();
            else
            {
                gemm.Dispose();
                device.Dispose();
            }
            if (e is CwaException) throw;
            throw new CwaException($"--device cuda: could not set up the model on {name} ({e.Message.Split('\n')[0]})");
        }
    }

    private static string? CudaUnavailable(string? cudaLibDir)
    {
        try
        {
            CublasLocator.Load(cudaLibDir);
            using var device = DeviceContext.CreateCuda();
            return null;
        }
        catch (CwaException e)
        {
            return e.Message;
        }
        catch (Exception e)
        {
            return $"--device cuda: the CUDA driver could not be initialised ({e.Message.Split('\n')[0]})";
        }
    }
}
