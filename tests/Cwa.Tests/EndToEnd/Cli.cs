namespace Cwa.Tests.EndToEnd;

/// <summary>Runs the real CLI entry point in-process and captures its output.</summary>
internal static class Cli
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Cwa.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}

/// <summary>One tiny generated model shared by the end-to-end tests of a class.</summary>
public sealed class TinyModelFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public string Model => Dir.File("tiny");

    public TinyModelFixture()
    {
        var (code, _, err) = Cli.Run("create-test-model", "--preset", "tiny", "--seed", "3", "--out", Model, "--quiet");
        if (code != 0) throw new InvalidOperationException(err);
    }

    public void Dispose() => Dir.Dispose();
}
