using System.CommandLine;

namespace Cwa.Cli.Commands;

/// <summary>Options that mean the same in every command that loads a model: which model, where and how it runs.</summary>
internal static class CommonOptions
{
    public static readonly Option<string?> Model = new("--model", "-m") { Description = "Hugging Face model folder (config.json, *.safetensors, tokenizer). Default: the built-in demo model." };
    public static readonly Option<string> Device = new("--device") { Description = "cpu, cuda or auto (cuda when available, else cpu); ilgpu-cpu runs the CUDA code path on the CPU (slow, for checking a build).", DefaultValueFactory = _ => "auto" };
    public static readonly Option<string?> CudaLibDir = new("--cuda-lib-dir") { Description = "Folder holding libcublas.so (default: LD_LIBRARY_PATH, /usr/local/cuda/lib64, pip's nvidia/cublas/lib)." };
    public static readonly Option<string?> Dtype = new("--dtype") { Description = "Precision the weights are held in: bf16, f16 or f32 (default: as stored). Arithmetic is fp32; on a GPU, products of bf16/f16 weights take half inputs and accumulate in fp32." };
    public static readonly Option<int> Threads = new("--threads") { Description = "CPU threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
    public static readonly Option<string> Streaming = new("--streaming") { Description = "Layer streaming: weights stay memory-mapped and one block at a time is widened (on the CPU) or uploaded (on a GPU), so an 8B model runs in a few GB of RAM and a 70B model on one 80 GB GPU. auto (default) streams when the in-memory run does not fit --memory-budget (CPU) or the GPU's memory; on or off force it.", DefaultValueFactory = _ => "auto" };
    public static readonly Option<string?> MemoryBudget = new("--memory-budget") { Description = "Memory the run may use, e.g. 8G or 512M (default: what the machine has available). Streaming keeps hidden states in memory within it and spills them to a scratch file beyond." };
    public static readonly Option<string?> ExperimentName = new("--experiment-name") { Description = "Name recorded in the manifest." };

    public static int Positive(int v, string name, int min = 1) =>
        v >= min ? v : throw new Core.InputException($"{name} must be at least {min} (got {v})");
}
