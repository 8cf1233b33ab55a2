using System.Diagnostics;

namespace Cwa.Core.Reporting;

/// <summary>Wall-clock seconds per named phase, in the order phases ran; repeated phases add up.</summary>
public sealed class PhaseTimer
{
    private readonly List<(string Phase, double Seconds)> _phases = new();

    public IDisposable Phase(string name) => new Scope(this, name);

    public IReadOnlyList<(string Phase, double Seconds)> Phases => _phases;

    /// <summary>Adds seconds measured elsewhere (a streamed run scores inside its gradient pass).</summary>
    public void Record(string name, double seconds)
    {
        int i = _phases.FindIndex(p => p.Phase == name);
        if (i >= 0) _phases[i] = (name, _phases[i].Seconds + seconds);
        else _phases.Add((name, seconds));
    }

    private sealed class Scope(PhaseTimer timer, string name) : IDisposable
    {
        private readonly Stopwatch _sw = Stopwatch.StartNew();
        public void Dispose() => timer.Record(name, _sw.Elapsed.TotalSeconds);
    }
}
