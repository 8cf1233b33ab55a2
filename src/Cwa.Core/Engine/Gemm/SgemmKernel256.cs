using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cwa.Core.Engine;

/// <summary>AVX2/FMA micro-kernel for machines without AVX-512: a 6 x 16 tile in 12 ymm accumulators.</summary>
internal static unsafe class SgemmKernel256
{
    public const int MR = 6;
    public const int NR = 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Full(int kc, float* ap, float* bp, float* c, int ldc, float alpha, float beta)
    {
        Vector256<float> c00 = Vector256<float>.Zero, c01 = Vector256<float>.Zero;
        Vector256<float> c10 = Vector256<float>.Zero, c11 = Vector256<float>.Zero;
        Vector256<float> c20 = Vector256<float>.Zero, c21 = Vector256<float>.Zero;
        Vector256<float> c30 = Vector256<float>.Zero, c31 = Vector256<float>.Zero;
        Vector256<float> c40 = Vector256<float>.Zero, c41 = Vector256<float>.Zero;
        Vector256<float> c50 = Vector256<float>.Zero, c51 = Vector256<float>.Zero;
        for (int p = 0; p < kc; p++, ap += MR, bp += NR)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            { var av = Vector256.Create(ap[0]); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01); }
            { var av = Vector256.Create(ap[1]); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11); }
            { var av = Vector256.Create(ap[2]); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21); }
            { var av = Vector256.Create(ap[3]); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31); }
            { var av = Vector256.Create(ap[4]); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41); }
            { var av = Vector256.Create(ap[5]); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51); }
        }
        Store(c + 0 * ldc, c00, c01, alpha, beta);
        Store(c + 1 * ldc, c10, c11, alpha, beta);
        Store(c + 2 * ldc, c20, c21, alpha, beta);
        Store(c + 3 * ldc, c30, c31, alpha, beta);
        Store(c + 4 * ldc, c40, c41, alpha, beta);
        Store(c + 5 * ldc, c50, c51, alpha, beta);
    }

    public static void Edge(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        float* tmp = stackalloc float[MR * NR];
        Full(kc, ap, bp, tmp, NR, 1f, 0f);
        EdgeTile.Store(tmp, NR, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> v0, Vector256<float> v1, float alpha, float beta)
    {
        var al = Vector256.Create(alpha);
        if (beta == 0f)
        {
            Vector256.Store(v0 * al, c);
            Vector256.Store(v1 * al, c + 8);
        }
        else
        {
            var be = Vector256.Create(beta);
            Vector256.Store(Fma.MultiplyAdd(v0, al, Vector256.Load(c) * be), c);
            Vector256.Store(Fma.MultiplyAdd(v1, al, Vector256.Load(c + 8) * be), c + 8);
        }
    }
}
