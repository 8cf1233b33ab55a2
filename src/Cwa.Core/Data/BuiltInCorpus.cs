using System.Reflection;

namespace Cwa.Core.Data;

/// <summary>
/// The project's own English corpus (one paragraph per line, written for this project). The split is fixed —
/// every fifth paragraph is held out — so evaluation texts can never leak into calibration, whatever the seed.
/// </summary>
public static class BuiltInCorpus
{
    private static readonly Lazy<IReadOnlyList<string>> Paragraphs = new(Load);

    public static IReadOnlyList<string> All => Paragraphs.Value;
    public static IReadOnlyList<string> Calibration => All.Where((_, i) => i % 5 != 4).ToList();
    public static IReadOnlyList<string> Evaluation => All.Where((_, i) => i % 5 == 4).ToList();

    public const string SourceName = "built-in corpus";

    private static IReadOnlyList<string> Load()
    {
        const string name = "Cwa.Core.Data.Resources.corpus.txt";
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"embedded resource {name} is missing from Cwa.Core");
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line)
            if (line.Trim().Length > 0) lines.Add(line.Trim());
        return lines;
    }
}
