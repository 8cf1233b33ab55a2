using Cwa.Core.Models;

namespace Cwa.Core.Ranking;

/// <summary>
/// Which weights a Parquet score dump holds: the top Top scores of every scored tensor (0: every weight), or only of
/// the named tensors. Names match exactly or with the checkpoint's "model." prefix and ".weight" suffix added.
/// </summary>
public sealed record DumpSelection(int Top, IReadOnlyList<string> Tensors)
{
    public bool Wants(ParameterSpec spec) =>
        Tensors.Count == 0 || Tensors.Any(n => spec.Name == n || spec.Name == n + ".weight" || spec.Name == "model." + n || spec.Name == "model." + n + ".weight");

    /// <summary>How many of the tensor's weights are dumped.</summary>
    public int Count(ParameterSpec spec) => (int)(Top <= 0 ? spec.NumElements : Math.Min(Top, spec.NumElements));

    /// <summary>The tensor's dumped weights, best first (null when the tensor is not dumped).</summary>
    public List<ScoredIndex>? Collect(int t, ParameterSpec spec, ReadOnlySpan<float> scores)
    {
        if (!Wants(spec)) return null;
        var c = new TopKCollector(Count(spec));
        c.Add(t, scores);
        return c.Result();
    }

    /// <summary>Every named tensor must exist among the scored ones (a typo would silently dump nothing).</summary>
    public void Check(IReadOnlyList<ParameterSpec> names)
    {
        foreach (var n in Tensors)
            if (!names.Any(s => new DumpSelection(0, [n]).Wants(s)))
                throw new InputException($"--dump-tensors: '{n}' is not a scored tensor of this model (e.g. '{names[0].Name}')");
    }
}
