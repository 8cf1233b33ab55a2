using System.Runtime.InteropServices;

namespace Cwa.Cuda.Gemm;

/// <summary>
/// The few cuBLAS entry points the backend uses, bound at run time from the library CublasLocator found (so the
/// project builds and runs without CUDA installed). Constants are cuBLAS's own enum values.
/// </summary>
internal sealed unsafe class CublasApi
{
    public const int OpN = 0, OpT = 1;
    public const int R32F = 0, R16F = 2, R16BF = 14;
    public const int Compute32F = 68, Compute32FFastTf32 = 77;
    public const int GemmDefault = -1;

    public readonly delegate* unmanaged<IntPtr*, int> Create;
    public readonly delegate* unmanaged<IntPtr, int> Destroy;
    public readonly delegate* unmanaged<IntPtr, IntPtr, int> SetStream;
    public readonly delegate* unmanaged<IntPtr, int, int, int, int, int, void*, IntPtr, int, int, IntPtr, int, int, void*, IntPtr, int, int, int, int, int> GemmEx;
    public readonly delegate* unmanaged<IntPtr, int, int, int, int, int, void*, IntPtr, int, int, IntPtr, int, int, void*, IntPtr, int, int, int, int, int, int> GemmBatchedEx;

    public string LibraryPath { get; }

    public CublasApi(IntPtr library, string path)
    {
        LibraryPath = path;
        Create = (delegate* unmanaged<IntPtr*, int>)Export(library, "cublasCreate_v2");
        Destroy = (delegate* unmanaged<IntPtr, int>)Export(library, "cublasDestroy_v2");
        SetStream = (delegate* unmanaged<IntPtr, IntPtr, int>)Export(library, "cublasSetStream_v2");
        GemmEx = (delegate* unmanaged<IntPtr, int, int, int, int, int, void*, IntPtr, int, int, IntPtr, int, int, void*, IntPtr, int, int, int, int, int>)Export(library, "cublasGemmEx");
        GemmBatchedEx = (delegate* unmanaged<IntPtr, int, int, int, int, int, void*, IntPtr, int, int, IntPtr, int, int, void*, IntPtr, int, int, int, int, int, int>)Export(library, "cublasGemmBatchedEx");
    }

    private IntPtr Export(IntPtr library, string name) =>
        NativeLibrary.TryGetExport(library, name, out var p) ? p : throw new Core.InputException($"{LibraryPath}: cuBLAS library has no {name} (too old? CUDA 11 or newer is needed)");

    /// <summary>Throws with cuBLAS's status name unless the call succeeded.</summary>
    public static void Check(int status, string what)
    {
        if (status == 0) return;
        string name = status switch
        {
            1 => "NOT_INITIALIZED", 3 => "ALLOC_FAILED", 7 => "INVALID_VALUE", 8 => "ARCH_MISMATCH", 11 => "MAPPING_ERROR",
            13 => "EXECUTION_FAILED", 14 => "INTERNAL_ERROR", 15 => "NOT_SUPPORTED", 16 => "LICENSE_ERROR", _ => status.ToString(),
        };
        throw new Core.CwaException($"cuBLAS {what} failed: CUBLAS_STATUS_{name}");
    }
}
