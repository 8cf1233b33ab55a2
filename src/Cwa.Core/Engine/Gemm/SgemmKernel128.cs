using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Cwa.Core.Engine;

/// <summary>
/// 128-bit micro-kernel for machines with neither AVX2 nor AVX-512, above all ARM64 (Apple Silicon, Graviton): an 8 x 12
/// tile in 24 accumulators, which with 3 B vectors and a broadcast fits AArch64's 32 vector registers. Written with the
/// portable <see cref="Vector128"/> API, so it compiles to NEON FMLA there and to FMA on x86, where the tests run it.
/// </summary>
internal static unsafe class SgemmKernel128
{
    public const int MR = 8;
    public const int NR = 12;

    /// <summary>Full tile: C[0..8, 0..12] = beta * C + alpha * Ap * Bp (beta 0 overwrites).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Full(int kc, float* ap, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector128<float> c00 = Vector128<float>.Zero, c01 = Vector128<float>.Zero, c02 = Vector128<float>.Zero;
        Vector128<float> c10 = Vector128<float>.Zero, c11 = Vector128<float>.Zero, c12 = Vector128<float>.Zero;
        Vector128<float> c20 = Vector128<float>.Zero, c21 = Vector128<float>.Zero, c22 = Vector128<float>.Zero;
        Vector128<float> c30 = Vector128<float>.Zero, c31 = Vector128<float>.Zero, c32 = Vector128<float>.Zero;
        Vector128<float> c40 = Vector128<float>.Zero, c41 = Vector128<float>.Zero, c42 = Vector128<float>.Zero;
        Vector128<float> c50 = Vector128<float>.Zero, c51 = Vector128<float>.Zero, c52 = Vector128<float>.Zero;
        Vector128<float> c60 = Vector128<float>.Zero, c61 = Vector128<float>.Zero, c62 = Vector128<float>.Zero;
        Vector128<float> c70 = Vector128<float>.Zero, c71 = Vector128<float>.Zero, c72 = Vector128<float>.Zero;
        for (int p = 0; p < kc; p++, ap += MR, bp += NR)
        {
            var b0 = Vector128.Load(bp);
            var b1 = Vector128.Load(bp + 4);
            var b2 = Vector128.Load(bp + 8);
            { var av = Vector128.Create(ap[0]); c00 = Vector128.FusedMultiplyAdd(av, b0, c00); c01 = Vector128.FusedMultiplyAdd(av, b1, c01); c02 = Vector128.FusedMultiplyAdd(av, b2, c02); }
            { var av = Vector128.Create(ap[1]); c10 = Vector128.FusedMultiplyAdd(av, b0, c10); c11 = Vector128.FusedMultiplyAdd(av, b1, c11); c12 = Vector128.FusedMultiplyAdd(av, b2, c12); }
            { var av = Vector128.Create(ap[2]); c20 = Vector128.FusedMultiplyAdd(av, b0, c20); c21 = Vector128.FusedMultiplyAdd(av, b1, c21); c22 = Vector128.FusedMultiplyAdd(av, b2, c22); }
            { var av = Vector128.Create(ap[3]); c30 = Vector128.FusedMultiplyAdd(av, b0, c30); c31 = Vector128.FusedMultiplyAdd(av, b1, c31); c32 = Vector128.FusedMultiplyAdd(av, b2, c32); }
            { var av = Vector128.Create(ap[4]); c40 = Vector128.FusedMultiplyAdd(av, b0, c40); c41 = Vector128.FusedMultiplyAdd(av, b1, c41); c42 = Vector128.FusedMultiplyAdd(av, b2, c42); }
            { var av = Vector128.Create(ap[5]); c50 = Vector128.FusedMultiplyAdd(av, b0, c50); c51 = Vector128.FusedMultiplyAdd(av, b1, c51); c52 = Vector128.FusedMultiplyAdd(av, b2, c52); }
            { var av = Vector128.Create(ap[6]); c60 = Vector128.FusedMultiplyAdd(av, b0, c60); c61 = Vector128.FusedMultiplyAdd(av, b1, c61); c62 = Vector128.FusedMultiplyAdd(av, b2, c62); }
            { var av = Vector128.Create(ap[7]); c70 = Vector128.FusedMultiplyAdd(av, b0, c70); c71 = Vector128.FusedMultiplyAdd(av, b1, c71); c72 = Vector128.FusedMultiplyAdd(av, b2, c72); }
        }
        Store(c + 0 * ldc, c00, c01, c02, alpha, beta);
        Store(c + 1 * ldc, c10, c11, c12, alpha, beta);
        Store(c + 2 * ldc, c20, c21, c22, alpha, beta);
        Store(c + 3 * ldc, c30, c31, c32, alpha, beta);
        Store(c + 4 * ldc, c40, c41, c42, alpha, beta);
        Store(c + 5 * ldc, c50, c51, c52, alpha, beta);
        Store(c + 6 * ldc, c60, c61, c62, alpha, beta);
        Store(c + 7 * ldc, c70, c71, c72, alpha, beta);
    }

    /// <summary>Edge tile (mr &lt; 8 or nr &lt; 12): computes the full tile into a buffer, stores the valid part.</summary>
    public static void Edge(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        float* tmp = stackalloc float[MR * NR];
        Full(kc, ap, bp, tmp, NR, 1f, 0f);
        EdgeTile.Store(tmp, NR, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector128<float> v0, Vector128<float> v1, Vector128<float> v2, float alpha, float beta)
    {
        var al = Vector128.Create(alpha);
        if (beta == 0f)
        {
            Vector128.Store(v0 * al, c);
            Vector128.Store(v1 * al, c + 4);
            Vector128.Store(v2 * al, c + 8);
        }
        else
        {
            var be = Vector128.Create(beta);
            Vector128.Store(Vector128.FusedMultiplyAdd(v0, al, Vector128.Load(c) * be), c);
            Vector128.Store(Vector128.FusedMultiplyAdd(v1, al, Vector128.Load(c + 4) * be), c + 4);
            Vector128.Store(Vector128.FusedMultiplyAdd(v2, al, Vector128.Load(c + 8) * be), c + 8);
        }
    }
}
