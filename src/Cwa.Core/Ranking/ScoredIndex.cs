namespace Cwa.Core.Ranking;

/// <summary>
/// A candidate weight. Ordering (best first): higher score, then lower tensor index, then lower flat index;
/// NaN counts as lowest. This total order makes every top-k deterministic and reproducible across runs.
/// </summary>
public readonly record struct ScoredIndex(int TensorIndex, long FlatIndex, float Score) : IComparable<ScoredIndex>
{
    /// <summary>Negative when this ranks ahead of other.</summary>
    public int CompareTo(ScoredIndex other)
    {
        bool nanA = float.IsNaN(Score), nanB = float.IsNaN(other.Score);
        if (nanA != nanB) return nanA ? 1 : -1;
        if (!nanA && Score != other.Score) return Score > other.Score ? -1 : 1;
        if (TensorIndex != other.TensorIndex) return TensorIndex < other.TensorIndex ? -1 : 1;
        return FlatIndex.CompareTo(other.FlatIndex);
    }
}
