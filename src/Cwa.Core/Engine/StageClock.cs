using System.Diagnostics;

namespace Cwa.Core.Engine;

/// <summary>
/// Seconds a layer-major pass spends in each of its stages (loading weights, block forwards, the loss head, block
/// backwards, the embedding), so a slow run says where its time went. Time spent in the caller's callbacks
/// (scoring) is not counted.
/// </summary>
internal sealed class StageClock
{
    private readonly Dictionary<string, double> _seconds = new();

    public IReadOnlyDictionary<string, double> Seconds => _seconds;

    public void Time(string stage, Action work)
    {
        long start = Stopwatch.GetTimestamp();
        try { work(); }
        finally { Add(stage, Stopwatch.GetElapsedTime(start).TotalSeconds); }
    }

    public T Time<T>(string stage, Func<T> work)
    {
        long start = Stopwatch.GetTimestamp();
        try { return work(); }
        finally { Add(stage, Stopwatch.GetElapsedTime(start).TotalSeconds); }
    }

    public void Clear() => _seconds.Clear();

    public void Add(string stage, double seconds) => _seconds[stage] = _seconds.GetValueOrDefault(stage) + seconds;
}
