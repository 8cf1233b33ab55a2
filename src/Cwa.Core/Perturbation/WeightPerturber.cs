using Cwa.Core.Engine;

namespace Cwa.Core.Perturbation;

/// <summary>
/// Applies a perturbation to selected weights of a backend and restores them. Only touched weights are saved;
/// restore re-reads them and fails loudly unless every bit matches the original.
/// </summary>
public static class WeightPerturber
{
    public static PerturbationSnapshot Apply(IBackend backend, IReadOnlyList<TensorSelection> selection, PerturbationSettings s)
    {
        s.Validate();
        var touched = new List<TensorSelection>();
        var originals = new List<float[]>();
        int bit = s.Bit ?? HeldValueBits.DefaultBit(s.HeldType);
        foreach (var sel in selection)
        {
            var rng = SplitMix64.For(s.Seed, sel.TensorIndex, 0x5045);
            var chosen = new List<long>(sel.FlatIndices.Length);
            foreach (long idx in sel.FlatIndices)
                if (s.Probability >= 1 || rng.NextDouble() < s.Probability)
                    chosen.Add(idx);
            if (chosen.Count == 0) continue;
            var idxs = chosen.ToArray();
            var old = new float[idxs.Length];
            backend.ReadWeightsAt(sel.TensorIndex, idxs, old);
            var scales = s.Kind == PerturbationKind.Quantize ? GroupScales(backend, sel.TensorIndex, idxs, s) : null;
            var updated = new float[idxs.Length];
            for (int i = 0; i < idxs.Length; i++)
            {
                float w = old[i];
                updated[i] = s.Kind switch
                {
                    PerturbationKind.Zero => 0f,
                    PerturbationKind.SignFlip => -w,
                    PerturbationKind.Scale => (float)(w * s.Scale),
                    PerturbationKind.GaussNoise => (float)(w + rng.NextGaussian() * (s.Absolute ? s.Scale : s.Scale * Math.Abs(w))),
                    PerturbationKind.BitFlip => HeldValueBits.FlipBit(w, bit, s.HeldType),
                    PerturbationKind.Quantize => RoundToNearest.Quantize(w, scales![i], s.QuantBits),
                    _ => throw new ArgumentOutOfRangeException(nameof(s)),
                };
            }
            backend.WriteWeights(sel.TensorIndex, idxs, updated);
            touched.Add(new TensorSelection(sel.TensorIndex, idxs));
            originals.Add(old);
        }
        return new PerturbationSnapshot(touched, originals);
    }

    /// <summary>
    /// Each selected weight's group scale, from the current (unperturbed) weights of its group. The groups are
    /// gathered in one read however many of their weights are selected (one transfer on a GPU).
    /// </summary>
    private static float[] GroupScales(IBackend backend, int tensor, long[] indices, PerturbationSettings s)
    {
        // A 1-D tensor (norm, bias) is one row: its groups run along the vector, not one weight each.
        var spec = backend.Specs[tensor];
        int cols = spec.Is2D ? spec.Cols : (int)spec.NumElements;
        var slot = new Dictionary<(long Row, int Start), int>();
        var groups = new List<(long Row, int Start, int Length)>();
        var groupOf = new int[indices.Length];
        long total = 0;
        for (int i = 0; i < indices.Length; i++)
        {
            long row = indices[i] / cols;
            var (start, length) = RoundToNearest.Group((int)(indices[i] % cols), cols, s.QuantGroup);
            if (!slot.TryGetValue((row, start), out int g))
            {
                slot[(row, start)] = g = groups.Count;
                groups.Add((row, start, length));
                total += length;
            }
            groupOf[i] = g;
        }
        var at = new long[total];
        long o = 0;
        foreach (var (row, start, length) in groups)
            for (int c = 0; c < length; c++) at[o++] = row * cols + start + c;
        var values = new float[total];
        backend.ReadWeightsAt(tensor, at, values);
        var groupScale = new float[groups.Count];
        o = 0;
        for (int g = 0; g < groups.Count; g++)
        {
            groupScale[g] = RoundToNearest.Scale(values.AsSpan((int)o, groups[g].Length), s.QuantBits);
            o += groups[g].Length;
        }
        var scales = new float[indices.Length];
        for (int i = 0; i < indices.Length; i++) scales[i] = groupScale[groupOf[i]];
        return scales;
    }

    public static void Restore(IBackend backend, PerturbationSnapshot snapshot)
    {
        for (int t = 0; t < snapshot.Touched.Count; t++)
        {
            var sel = snapshot.Touched[t];
            backend.WriteWeights(sel.TensorIndex, sel.FlatIndices, snapshot.Originals[t]);
            var check = new float[sel.FlatIndices.Length];
            backend.ReadWeightsAt(sel.TensorIndex, sel.FlatIndices, check);
            for (int i = 0; i < sel.FlatIndices.Length; i++)
                if (BitConverter.SingleToInt32Bits(check[i]) != BitConverter.SingleToInt32Bits(snapshot.Originals[t][i]))
                    throw new CwaException($"restore of {backend.Specs[sel.TensorIndex].Name}[{sel.FlatIndices[i]}] is not bit-exact; results after this point would be invalid");
        }
    }
}
