using System.Numerics;
using System.Runtime.InteropServices;

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
    /// Streams one tensor's scores (flat indices ascending, the first being firstIndex). Once the heap is full, a
    /// score that is not strictly better than the current worst cannot enter: an equal score has a later index, so
    /// it ranks after. That comparison rejects almost every weight without touching the heap, a vector of scores at a time:
    /// a block none of whose scores beats the worst (NaN never does) is skipped whole.
    /// </summary>
    /// <param name="floor">largest only: scores below it (and NaN) are skipped, full heap or not</param>
    public void Add(int tensorIndex, ReadOnlySpan<float> scores, long firstIndex = 0, float? floor = null)
    {
        if (_k == 0) return;
        if (floor != null && !_largest) throw new ArgumentException("a floor only applies to the largest scores", nameof(floor));
        float worst = _heap.Count == _k ? _heap.Peek().Score : float.NaN;
        int i = 0, n = scores.Length, width = Vector<float>.Count;
        ref float first = ref MemoryMarshal.GetReference(scores);
        while (i < n)
        {
            int end = Math.Min(n, i + width);
            if (end - i == width && _heap.Count == _k && !float.IsNaN(worst))
            {
                var v = Vector.LoadUnsafe(ref first, (nuint)i);
                var w = new Vector<float>(worst);
                if (!(_largest ? Vector.GreaterThanAny(v, w) : Vector.LessThanAny(v, w)))
                {
                    i = end;
                    continue;
                }
            }
            else if (end - i == width && floor is float f && !Vector.GreaterThanOrEqualAny(Vector.LoadUnsafe(ref first, (nuint)i), new Vector<float>(f)))
            {
                i = end;
                continue;
            }
            for (; i < end; i++)
            {
                float s = scores[i];
                if (floor != null && !(s >= floor.Value)) continue;
                if (_heap.Count == _k && !float.IsNaN(worst) && (_largest ? !(s > worst) : !(s < worst))) continue;
                if (!_largest && float.IsNaN(s)) continue;
                Offer(new ScoredIndex(tensorIndex, firstIndex + i, s));
                if (_heap.Count == _k) worst = _heap.Peek().Score;
            }
        }
    }

    /// <summary>
    /// The best k of scores[0 .. n) of one tensor, best first, found on several threads: each takes a fixed range
    /// with its own collector, and their candidates are merged. Ranking is a total order (score, then flat index),
    /// so the result is the one a single collector finds, whatever the thread count.
    /// </summary>
    /// <param name="floor">
    /// largest only: a value at or below the k-th best score (a percentile known beforehand), so that only the few
    /// scores above it reach the heap; when fewer than k scores reach it, the floor was too high and it scans again without
    /// </param>
    public static List<ScoredIndex> Best(int k, bool largest, int tensorIndex, float[] scores, int n, int threads, float? floor = null)
    {
        const int MinPerThread = 1 << 20;
        int parts = Math.Clamp(n / MinPerThread, 1, Math.Max(1, threads));
        var collectors = new TopKCollector[parts];
        long per = (n + (long)parts - 1) / parts;
        Engine.Gemm.ParallelFor(parts, parts, p =>
        {
            int start = (int)Math.Min(n, p * per), end = (int)Math.Min(n, (p + 1) * per);
            collectors[p] = new TopKCollector(k, largest);
            collectors[p].Add(tensorIndex, scores.AsSpan(start, end - start), start, floor);
        });
        var merged = collectors[0];
        if (parts > 1)
        {
            merged = new TopKCollector(k, largest);
            foreach (var c in collectors)
                foreach (var x in c._heap.UnorderedItems) merged.Offer(x.Element);
        }
        // A full heap of scores at or above the floor is exact: every skipped score is below all of them.
        if (floor != null && merged.Count < Math.Min(k, n)) return Best(k, largest, tensorIndex, scores, n, threads);
        return merged.Result();
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
