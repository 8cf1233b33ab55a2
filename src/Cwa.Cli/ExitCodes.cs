namespace Cwa.Cli;

/// <summary>Documented process exit codes (README "Exit codes").</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int RuntimeFailure = 1;
    public const int Usage = 2;
    /// <summary>Cancelled by SIGINT (Ctrl-C).</summary>
    public const int Interrupted = 130;
    /// <summary>Cancelled by SIGTERM.</summary>
    public const int Terminated = 143;
}
