namespace Cwa.Core.Perturbation;

/// <summary>
/// Symmetric round-to-nearest quantisation as RTN quantisers compute it: each row of a [out, in] matrix is split into
/// groups of G consecutive input columns; a group's scale is its largest |w| over qmax = 2^(bits-1) - 1, and a weight
/// becomes clamp(round(w / scale), -qmax, qmax) * scale (round half to even, as torch.round). The scale comes from the
/// unperturbed weights, so quantising part of a group gives the values quantising all of it would.
/// </summary>
public static class RoundToNearest
{
    public static readonly int[] SupportedBits = [8, 4, 3, 2];

    public static int MaxLevel(int bits) => (1 << (bits - 1)) - 1;

    /// <summary>The group (first column, length) that input column col of a row belongs to.</summary>
    public static (int Start, int Length) Group(int col, int cols, int groupSize)
    {
        int start = col / groupSize * groupSize;
        return (start, Math.Min(groupSize, cols - start));
    }

    public static float Scale(ReadOnlySpan<float> group, int bits)
    {
        float max = 0;
        foreach (float w in group) max = Math.Max(max, Math.Abs(w));
        return max / MaxLevel(bits);
    }

    public static float Quantize(float w, float scale, int bits)
    {
        if (scale == 0) return 0;
        int q = MaxLevel(bits);
        double level = Math.Clamp(Math.Round(w / (double)scale, MidpointRounding.ToEven), -q, q);
        return (float)(level * scale);
    }
}
