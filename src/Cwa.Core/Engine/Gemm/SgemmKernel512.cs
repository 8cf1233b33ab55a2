using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cwa.Core.Engine;

/// <summary>
/// AVX-512 register-blocked micro-kernel: a 12 x 32 tile of C held in 24 zmm accumulators, fed by an A panel
/// (12 floats per k) and a B panel (32 floats per k). 24 accumulators + 2 B vectors + 1 broadcast leave room
/// in the 32 zmm registers, so the loop body is pure loads and FMAs.
/// </summary>
internal static unsafe class SgemmKernel512
{
    public const int MR = 12;
    public const int NR = 32;

    /// <summary>Full tile: C[0..12, 0..32] = beta * C + alpha * Ap * Bp (beta 0 overwrites).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Full(int kc, float* ap, float* bp, float* c, int ldc, float alpha, float beta)
    {
        // C is read and written only after the k loop; fetching its rows now hides their miss behind the loop.
        for (int r = 0; r < MR; r++)
        {
            Sse.Prefetch0(c + r * ldc);
            Sse.Prefetch0(c + r * ldc + 16);
        }
        Vector512<float> c00 = Vector512<float>.Zero, c01 = Vector512<float>.Zero;
        Vector512<float> c10 = Vector512<float>.Zero, c11 = Vector512<float>.Zero;
        Vector512<float> c20 = Vector512<float>.Zero, c21 = Vector512<float>.Zero;
        Vector512<float> c30 = Vector512<float>.Zero, c31 = Vector512<float>.Zero;
        Vector512<float> c40 = Vector512<float>.Zero, c41 = Vector512<float>.Zero;
        Vector512<float> c50 = Vector512<float>.Zero, c51 = Vector512<float>.Zero;
        Vector512<float> c60 = Vector512<float>.Zero, c61 = Vector512<float>.Zero;
        Vector512<float> c70 = Vector512<float>.Zero, c71 = Vector512<float>.Zero;
        Vector512<float> c80 = Vector512<float>.Zero, c81 = Vector512<float>.Zero;
        Vector512<float> c90 = Vector512<float>.Zero, c91 = Vector512<float>.Zero;
        Vector512<float> c100 = Vector512<float>.Zero, c101 = Vector512<float>.Zero;
        Vector512<float> c110 = Vector512<float>.Zero, c111 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++, ap += MR, bp += NR)
        {
            var b0 = Vector512.Load(bp);
            var b1 = Vector512.Load(bp + 16);
            { var av = Vector512.Create(ap[0]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01); }
            { var av = Vector512.Create(ap[1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11); }
            { var av = Vector512.Create(ap[2]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21); }
            { var av = Vector512.Create(ap[3]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31); }
            { var av = Vector512.Create(ap[4]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41); }
            { var av = Vector512.Create(ap[5]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51); }
            { var av = Vector512.Create(ap[6]); c60 = Avx512F.FusedMultiplyAdd(av, b0, c60); c61 = Avx512F.FusedMultiplyAdd(av, b1, c61); }
            { var av = Vector512.Create(ap[7]); c70 = Avx512F.FusedMultiplyAdd(av, b0, c70); c71 = Avx512F.FusedMultiplyAdd(av, b1, c71); }
            { var av = Vector512.Create(ap[8]); c80 = Avx512F.FusedMultiplyAdd(av, b0, c80); c81 = Avx512F.FusedMultiplyAdd(av, b1, c81); }
            { var av = Vector512.Create(ap[9]); c90 = Avx512F.FusedMultiplyAdd(av, b0, c90); c91 = Avx512F.FusedMultiplyAdd(av, b1, c91); }
            { var av = Vector512.Create(ap[10]); c100 = Avx512F.FusedMultiplyAdd(av, b0, c100); c101 = Avx512F.FusedMultiplyAdd(av, b1, c101); }
            { var av = Vector512.Create(ap[11]); c110 = Avx512F.FusedMultiplyAdd(av, b0, c110); c111 = Avx512F.FusedMultiplyAdd(av, b1, c111); }
        }
        Store(c + 0 * ldc, c00, c01, alpha, beta);
        Store(c + 1 * ldc, c10, c11, alpha, beta);
        Store(c + 2 * ldc, c20, c21, alpha, beta);
        Store(c + 3 * ldc, c30, c31, alpha, beta);
        Store(c + 4 * ldc, c40, c41, alpha, beta);
        Store(c + 5 * ldc, c50, c51, alpha, beta);
        Store(c + 6 * ldc, c60, c61, alpha, beta);
        Store(c + 7 * ldc, c70, c71, alpha, beta);
        Store(c + 8 * ldc, c80, c81, alpha, beta);
        Store(c + 9 * ldc, c90, c91, alpha, beta);
        Store(c + 10 * ldc, c100, c101, alpha, beta);
        Store(c + 11 * ldc, c110, c111, alpha, beta);
    }

    /// <summary>Edge tile (mr &lt; 12 or nr &lt; 32): computes the full tile into a buffer, stores the valid part.</summary>
    public static void Edge(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        float* tmp = stackalloc float[MR * NR];
        Full(kc, ap, bp, tmp, NR, 1f, 0f);
        EdgeTile.Store(tmp, NR, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector512<float> v0, Vector512<float> v1, float alpha, float beta)
    {
        var al = Vector512.Create(alpha);
        if (beta == 0f)
        {
            Vector512.Store(v0 * al, c);
            Vector512.Store(v1 * al, c + 16);
        }
        else
        {
            var be = Vector512.Create(beta);
            Vector512.Store(Avx512F.FusedMultiplyAdd(v0, al, Vector512.Load(c) * be), c);
            Vector512.Store(Avx512F.FusedMultiplyAdd(v1, al, Vector512.Load(c + 16) * be), c + 16);
        }
    }
}
