namespace Cwa.Core;

/// <summary>A failure the user should see as one line. Exit code 1 = runtime failure.</summary>
public class CwaException : Exception
{
    public CwaException(string message, Exception? inner = null) : base(message, inner) { }

    public virtual int ExitCode => 1;
}

/// <summary>Bad input from the user (files, flags, data). Exit code 2. Message should name the file and the problem.</summary>
public sealed class InputException : CwaException
{
    public InputException(string message, Exception? inner = null) : base(message, inner) { }

    public override int ExitCode => 2;
}
