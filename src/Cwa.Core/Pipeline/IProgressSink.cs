namespace Cwa.Core.Pipeline;

/// <summary>Where long phases report progress; the CLI renders it, tests and --quiet ignore it.</summary>
public interface IProgressSink
{
    /// <summary>Starts a phase with a known number of steps and returns the handle to advance it.</summary>
    IPhaseProgress Start(string phase, double total);
    void Info(string message);
}

public interface IPhaseProgress : IDisposable
{
    void Advance(double steps = 1);
    void Describe(string text);
}

public sealed class NullProgress : IProgressSink, IPhaseProgress
{
    public static readonly NullProgress Instance = new();
    public IPhaseProgress Start(string phase, double total) => this;
    public void Info(string message) { }
    public void Advance(double steps = 1) { }
    public void Describe(string text) { }
    public void Dispose() { }
}
