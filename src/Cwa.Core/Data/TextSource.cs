using System.Text.Json;
using Parquet;

namespace Cwa.Core.Data;

/// <summary>Reads calibration/evaluation texts from .txt (one per non-empty line), .jsonl or .parquet files.</summary>
public static class TextSource
{
    public static IReadOnlyList<string> Read(string path, string textField = "text")
    {
        if (Directory.Exists(path)) throw new InputException($"{path}: is a directory; --data-file expects a .txt, .jsonl or .parquet file");
        if (!File.Exists(path)) throw new InputException($"{path}: data file not found");
        InputFiles.EnsureRegular(path);
        var texts = Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".txt" => File.ReadLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToList(),
            ".jsonl" or ".json" => ReadJsonl(path, textField),
            ".parquet" => ReadParquet(path, textField),
            var ext => throw new InputException($"{path}: unsupported data file type '{ext}' (use .txt, .jsonl or .parquet)"),
        };
        if (texts.Count == 0) throw new InputException($"{path}: contains no texts");
        return texts;
    }

    private static List<string> ReadJsonl(string path, string field)
    {
        var texts = new List<string>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement root;
            try { root = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw new InputException($"{path}:{lineNo}: invalid JSON ({e.Message.Split('.')[0]})"); }
            if (root.ValueKind != JsonValueKind.Object) throw new InputException($"{path}:{lineNo}: expected a JSON object per line");
            if (!root.TryGetProperty(field, out var v)) throw new InputException($"{path}:{lineNo}: no field '{field}' (set --text-field)");
            if (v.ValueKind != JsonValueKind.String) throw new InputException($"{path}:{lineNo}: field '{field}' is a {v.ValueKind.ToString().ToLowerInvariant()}, not a string");
            string s = v.GetString()!.Trim();
            if (s.Length > 0) texts.Add(s);
        }
        return texts;
    }

    /// <summary>How long the parquet library may take per file before the file is called damaged (tests shorten it).</summary>
    internal static TimeSpan ParquetPatience { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Reads the text column on a background thread and gives up after ParquetPatience plus 1 s per 20 MB: the parquet
    /// library can loop without end on damaged metadata (found by fuzzing), and a thread cannot be stopped, so the
    /// run reports the file instead of hanging; the process then exits and takes the thread with it.
    /// </summary>
    private static List<string> ReadParquet(string path, string field)
    {
        ParquetFooter.Check(path);
        List<string>? texts = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { texts = ReadParquetUnguarded(path, field); }
            catch (Exception e) { error = e; }
        }) { IsBackground = true, Name = "parquet reader" };
        thread.Start();
        var patience = ParquetPatience + TimeSpan.FromSeconds(new FileInfo(path).Length / 20e6);
        if (!thread.Join(patience))
        {
            thread.Priority = ThreadPriority.Lowest;
            throw new InputException($"{path}: cannot read parquet file (the reader did not finish within {patience.TotalSeconds:F0} s; its metadata is probably damaged)");
        }
        if (error != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
        return texts!;
    }

    private static List<string> ReadParquetUnguarded(string path, string field)
    {
        try
        {
            using var stream = new StrictEndStream(File.OpenRead(path));
            var reader = ParquetReader.CreateAsync(stream).GetAwaiter().GetResult();
            var dataFields = reader.Schema.GetDataFields();
            var column = dataFields.FirstOrDefault(f => f.Name == field)
                ?? throw new InputException($"{path}: no column '{field}' (columns: {string.Join(", ", dataFields.Select(f => f.Name))}; set --text-field)");
            var texts = new List<string>();
            for (int g = 0; g < reader.RowGroupCount; g++)
            {
                using var group = reader.OpenRowGroupReader(g);
                var strings = new string?[group.RowCount];
                try { group.ReadAsync(column, strings.AsMemory(), null, default).AsTask().GetAwaiter().GetResult(); }
                catch (Exception e) when (e is not CwaException) { throw new InputException($"{path}: column '{field}' does not hold text ({e.Message.Split('\n')[0]})"); }
                texts.AddRange(strings.Where(s => !string.IsNullOrWhiteSpace(s)).Select(s => s!.Trim()));
            }
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return texts;
        }
        catch (Exception e) when (e is not CwaException)
        {
            throw new InputException($"{path}: cannot read parquet file ({e.Message.Split('\n')[0]})");
        }
    }
}
