namespace Cwa.Core.Ranking;

/// <summary>
/// Keeps the best k candidates seen so far in a bounded heap whose root is the current worst, so memory is O(k)
/// however many weights stream past — the basis of exact global top-k over 8 B weights. With largest = false it
/// keeps the k smallest scores (bottom-k), skipping NaN; ties still go to the lower tensor, then flat index.
/// </summary>
public sealed class TopKCollector
{
    private readonly PriorityQueue<ScoredIndex, ScoredIndex> _heap;
    private readonly int _k;
    private readonly bool _largest;

    public TopKCollector(int k, bool largest = true)
    {
        _k = Math.Max(0, k);
        _largest = largest;
        _heap = new PriorityQueue<ScoredIndex, ScoredIndex>(Math.Min(_k, 1 << 20) + 1, Comparer<ScoredIndex>.Create((x, y) => Rank(y, x)));
    }

    /// <summary>Negative when a ranks ahead of b in this collector's direction.</summary>
    private int Rank(ScoredIndex a, ScoredIndex b)
    {
        if (_largest) return a.CompareTo(b);
        if (a.Score != b.Score) return a.Score < b.Score ? -1 : 1;
        if (a.TensorIndex != b.TensorIndex) return a.TensorIndex < b.TensorIndex ? -1 : 1;
        return a.FlatIndex.CompareTo(b.FlatIndex);
    }

    public int Count => _heap.Count;

    /// <summary>
    /// Streams one tensor's scores (flat indices ascending). Once the heap is full, a score that is not strictly
    /// better than the current worst cannot enter: an equal score has a later index, so it ranks after. That
    /// comparison rejects almost every weight without touching the heap.
    /// </summary>
    public void Add(int tensorIndex, ReadOnlySpan<float> scores)
    {
        if (_k == 0) return;
        float worst = float.NaN;
        for (int i = 0; i < scores.Length; i++)
        {
            float s = scores[i];
            if (_heap.Count == _k && !float.IsNaN(worst) && (_largest ? !(s > worst) : !(s < worst))) continue;
            if (!_largest && float.IsNaN(s)) continue;
            Offer(new ScoredIndex(tensorIndex, i, s));
            if (_heap.Count == _k) worst = _heap.Peek().Score;
        }
    }

    public void Offer(ScoredIndex c)
    {
        if (_k == 0) return;
        if (_heap.Count < _k) _heap.Enqueue(c, c);
        else if (Rank(c, _heap.Peek()) < 0) _heap.DequeueEnqueue(c, c);
    }

    /// <summary>Best first in this collector's direction.</summary>
    public List<ScoredIndex> Result()
    {
        var list = _heap.UnorderedItems.Select(x => x.Element).ToList();
        list.Sort(Rank);
        return list;
    }
}
