using System.Runtime.InteropServices;

namespace Cwa.Cli;

/// <summary>
/// SIGINT and SIGTERM cancel the running command at its next progress step instead of killing the process, so
/// temp files and the staging folder are removed, the out dir keeps its previous run, a gradient checkpoint stays
/// for --resume and the terminal gets its cursor back. A second signal ends the process at once.
/// </summary>
internal static class Interrupts
{
    private static readonly CancellationTokenSource Source = new();
    private static readonly List<PosixSignalRegistration> Registrations = [];

    public static CancellationToken Token => Source.Token;
    /// <summary>The signal that cancelled the run, or null.</summary>
    public static PosixSignal? Received { get; private set; }

    /// <summary>128 + signal number, as shells report a process ended by that signal.</summary>
    public static int ExitCode => Received == PosixSignal.SIGTERM ? ExitCodes.Terminated : ExitCodes.Interrupted;

    public static void Install()
    {
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM })
            Registrations.Add(PosixSignalRegistration.Create(signal, ctx =>
            {
                if (Received != null) return; // the second signal: default handling ends the process
                ctx.Cancel = true;
                Received = ctx.Signal;
                Source.Cancel();
            }));
    }
}
