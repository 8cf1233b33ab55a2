using ILGPU;

namespace Cwa.Cuda.Kernels;

/// <summary>
/// Reductions across one group through shared memory: a tree of fixed shape, so the result is deterministic for
/// a given group size (a power of two up to <see cref="MaxGroup"/>). Every thread of the group must call them.
/// </summary>
internal static class GroupReduce
{
    public const int MaxGroup = 256;

    public struct ArgMaxValue
    {
        public float Value;
        public int Index;
    }

    private const int OpSum = 0, OpMin = 1, OpMax = 2;

    public static float Sum(ArrayView<float> sh, float v) => Reduce(sh, v, OpSum);
    public static float Min(ArrayView<float> sh, float v) => Reduce(sh, v, OpMin);
    public static float Max(ArrayView<float> sh, float v) => Reduce(sh, v, OpMax);

    /// <summary>One tree for the three float reductions (op is uniform across the group, so the branch is free).</summary>
    private static float Reduce(ArrayView<float> sh, float v, int op)
    {
        int t = Group.IdxX;
        sh[t] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (t < s)
            {
                float a = sh[t], b = sh[t + s];
                sh[t] = op == OpSum ? a + b : op == OpMin ? MathF.Min(a, b) : MathF.Max(a, b);
            }
            Group.Barrier();
        }
        float r = sh[0];
        Group.Barrier();
        return r;
    }

    public static double Sum(ArrayView<double> sh, double v)
    {
        int t = Group.IdxX;
        sh[t] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (t < s) sh[t] += sh[t + s];
            Group.Barrier();
        }
        double r = sh[0];
        Group.Barrier();
        return r;
    }

    /// <summary>Largest value; among equal values the smallest index (what the CPU's IndexOfMax returns).</summary>
    public static ArgMaxValue ArgMax(ArrayView<float> shv, ArrayView<int> shi, ArgMaxValue v)
    {
        int t = Group.IdxX;
        shv[t] = v.Value;
        shi[t] = v.Index;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (t < s)
            {
                float o = shv[t + s];
                int oi = shi[t + s];
                if (o > shv[t] || (o == shv[t] && oi < shi[t]))
                {
                    shv[t] = o;
                    shi[t] = oi;
                }
            }
            Group.Barrier();
        }
        var r = new ArgMaxValue { Value = shv[0], Index = shi[0] };
        Group.Barrier();
        return r;
    }
}
