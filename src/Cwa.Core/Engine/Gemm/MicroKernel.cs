using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Cwa.Core.Engine;

/// <summary>The register kernels <see cref="Sgemm"/> can sweep its packed panels with, narrowest first.</summary>
internal enum MicroKernel
{
    /// <summary>No packed path: every product takes <see cref="ReferenceGemm"/> on one thread.</summary>
    Reference,
    /// <summary><see cref="SgemmKernel128"/>: ARM64 NEON, or x86 FMA at 128 bits.</summary>
    Vector128,
    /// <summary><see cref="SgemmKernel256"/>: AVX2 with FMA.</summary>
    Avx2,
    /// <summary><see cref="SgemmKernel512"/>: AVX-512.</summary>
    Avx512,
}

/// <summary>
/// Which micro-kernel the products run: the widest this machine has, unless a caller selected another for its own
/// flow of execution (<see cref="Use"/>). Tests use that to check every kernel the machine can run, since CI machines
/// have AVX-512 and would otherwise never execute the kernels laptops (ARM64, AVX2) depend on.
/// </summary>
internal static unsafe class MicroKernels
{
    public static readonly MicroKernel Best =
        Supports(MicroKernel.Avx512) ? MicroKernel.Avx512
        : Supports(MicroKernel.Avx2) ? MicroKernel.Avx2
        : Supports(MicroKernel.Vector128) ? MicroKernel.Vector128
        : MicroKernel.Reference;

    // An AsyncLocal and not a static: a test's choice flows into the Parallel.For workers it starts, and never into
    // the tests running beside it.
    private static readonly AsyncLocal<MicroKernel?> Selected = new();

    /// <summary>The kernel the products of the calling flow run.</summary>
    public static MicroKernel Current => Selected.Value ?? Best;

    public static bool Supports(MicroKernel kernel) => kernel switch
    {
        MicroKernel.Reference => true,
        // Vector128.FusedMultiplyAdd is one instruction only where the hardware fuses: without it the runtime emulates
        // each lane, slower than the reference loop.
        MicroKernel.Vector128 => Vector128.IsHardwareAccelerated && (Fma.IsSupported || AdvSimd.IsSupported),
        MicroKernel.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        MicroKernel.Avx512 => Avx512F.IsSupported,
        _ => false,
    };

    /// <summary>All kernels this machine can run, narrowest first.</summary>
    public static IEnumerable<MicroKernel> Supported => Enum.GetValues<MicroKernel>().Where(Supports);

    /// <summary>Runs the calling flow's products on <paramref name="kernel"/> until the result is disposed.</summary>
    public static IDisposable Use(MicroKernel kernel)
    {
        if (!Supports(kernel)) throw new PlatformNotSupportedException($"this machine cannot run the {kernel} micro-kernel");
        var previous = Selected.Value;
        Selected.Value = kernel;
        return new Restore(previous);
    }

    public static (int MR, int NR) Tile(MicroKernel kernel) => kernel switch
    {
        MicroKernel.Avx512 => (SgemmKernel512.MR, SgemmKernel512.NR),
        MicroKernel.Avx2 => (SgemmKernel256.MR, SgemmKernel256.NR),
        MicroKernel.Vector128 => (SgemmKernel128.MR, SgemmKernel128.NR),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), "the reference loop has no tile"),
    };

    /// <summary>
    /// One micro-tile of C = beta * C + alpha * Ap * Bp from packed panels of depth kc: the kernel's full tile, or its
    /// edge path for an mr x nr corner smaller than the tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(MicroKernel kernel, int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        switch (kernel)
        {
            case MicroKernel.Avx512:
                if (mr == SgemmKernel512.MR && nr == SgemmKernel512.NR) SgemmKernel512.Full(kc, ap, bp, c, ldc, alpha, beta);
                else SgemmKernel512.Edge(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
                break;
            case MicroKernel.Avx2:
                if (mr == SgemmKernel256.MR && nr == SgemmKernel256.NR) SgemmKernel256.Full(kc, ap, bp, c, ldc, alpha, beta);
                else SgemmKernel256.Edge(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
                break;
            case MicroKernel.Vector128:
                if (mr == SgemmKernel128.MR && nr == SgemmKernel128.NR) SgemmKernel128.Full(kc, ap, bp, c, ldc, alpha, beta);
                else SgemmKernel128.Edge(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kernel), "the reference loop has no micro-kernel");
        }
    }

    private sealed class Restore(MicroKernel? previous) : IDisposable
    {
        public void Dispose() => Selected.Value = previous;
    }
}
