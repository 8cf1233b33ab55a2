using System.Text.Json;
using System.Text.RegularExpressions;
using Cwa.Core.Data;

namespace Cwa.Core.Evaluation;

public enum TaskKind { MultipleChoice, LastWord }

/// <summary>A multiple-choice item (lm-eval-harness's HellaSwag/ARC/PIQA shape) or a last-word item (LAMBADA's).</summary>
public sealed record TaskItem(string Context, IReadOnlyList<string> Choices, int Label);

public sealed record TaskSet(string Name, TaskKind Kind, IReadOnlyList<TaskItem> Items);

/// <summary>
/// Reads task files and builds the built-in sets. A JSONL file holds one kind: multiple choice lines have `context`
/// (or `ctx`), `choices` (or `endings`) and `label`; last-word lines have `text`, whose final word is the target.
/// The built-in sets are generated deterministically from the built-in corpus's held-out texts, which the
/// calibration never sees.
/// </summary>
public static partial class TaskItems
{
    public const string BuiltIn = "builtin";

    public static IReadOnlyList<TaskSet> Load(string spec) =>
        spec == BuiltIn ? [BuiltInCloze(), BuiltInLastWord()] : spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Read).ToList();

    public static TaskSet Read(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: task file not found");
        InputFiles.EnsureRegular(path);
        var items = new List<TaskItem>();
        TaskKind? kind = null;
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (line.Trim().Length == 0) continue;
            string where = $"{path}:{n}";
            JsonElement e;
            try { e = JsonDocument.Parse(line).RootElement.Clone(); }
            catch (JsonException ex) { throw new InputException($"{where}: not valid JSON ({ex.Message.Split('.')[0]})"); }
            if (e.ValueKind != JsonValueKind.Object) throw new InputException($"{where}: expected a JSON object");
            string? Str(params string[] keys) => keys.Select(k => e.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null).FirstOrDefault(s => s != null);
            JsonElement? Arr(params string[] keys) => keys.Select(k => e.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.Array ? v : (JsonElement?)null).FirstOrDefault(v => v != null);
            TaskItem item;
            TaskKind k2;
            if (Arr("choices", "endings") is { } choices)
            {
                var list = choices.EnumerateArray().Select(c => c.ValueKind == JsonValueKind.String ? c.GetString()! : throw new InputException($"{where}: every choice must be a string")).ToList();
                if (list.Count < 2) throw new InputException($"{where}: a multiple-choice item needs at least 2 choices");
                string context = Str("context", "ctx", "query", "question") ?? throw new InputException($"{where}: no 'context' (or 'ctx')");
                int label = e.TryGetProperty("label", out var l) ? l.ValueKind switch
                {
                    JsonValueKind.Number when l.TryGetInt32(out int i) => i,
                    JsonValueKind.String when int.TryParse(l.GetString(), out int i) => i,
                    _ => -1,
                } : -1;
                if (label < 0 || label >= list.Count) throw new InputException($"{where}: 'label' must be the index of the right choice, 0..{list.Count - 1}");
                (item, k2) = (new TaskItem(context, list, label), TaskKind.MultipleChoice);
            }
            else if (Str("text") is { } text)
            {
                var m = LastWord().Match(text.TrimEnd());
                if (!m.Success) throw new InputException($"{where}: the text needs a context and a final word");
                (item, k2) = (new TaskItem(m.Groups[1].Value, [m.Groups[2].Value], 0), TaskKind.LastWord);
            }
            else throw new InputException($"{where}: neither a multiple-choice item ('context', 'choices', 'label') nor a last-word item ('text')");
            if (kind != null && kind != k2) throw new InputException($"{where}: a task file holds one kind of item; this one mixes multiple choice and last-word items");
            kind = k2;
            items.Add(item);
        }
        if (items.Count == 0) throw new InputException($"{path}: the task file has no items");
        return new TaskSet(Path.GetFileNameWithoutExtension(path), kind!.Value, items);
    }

    /// <summary>Context, then the final word with its leading space (the continuation scored), trailing punctuation dropped.</summary>
    [GeneratedRegex(@"^(.*\S)(\s+[\p{L}\p{N}'’-]+)[.!?,;:""”)]*$", RegexOptions.Singleline)]
    private static partial Regex LastWord();

    private static IEnumerable<string> Sentences() =>
        BuiltInCorpus.Evaluation.SelectMany(t => SentenceEnd().Split(t)).Select(s => s.Trim()).Where(s => s.Split(' ').Length >= 8 && s.Length <= 300);

    [GeneratedRegex(@"(?<=[.!?])\s+")]
    private static partial Regex SentenceEnd();

    /// <summary>Finish the sentence: its first half, the true second half and those of three other sentences (seeded).</summary>
    public static TaskSet BuiltInCloze()
    {
        var sentences = Sentences().Distinct().ToList();
        var halves = sentences.Select(s => { var w = s.Split(' '); int h = w.Length / 2; return (Head: string.Join(' ', w[..h]), Tail: " " + string.Join(' ', w[h..])); }).ToList();
        var rng = SplitMix64.For(2024, 0, 0x5441534B);
        var items = new List<TaskItem>();
        for (int i = 0; i < halves.Count && items.Count < 250; i++)
        {
            var others = new HashSet<int>();
            while (others.Count < 3) { int j = (int)rng.NextLong(halves.Count); if (j != i && halves[j].Tail != halves[i].Tail) others.Add(j); }
            int label = (int)rng.NextLong(4);
            var choices = others.Select(j => halves[j].Tail).ToList();
            choices.Insert(label, halves[i].Tail);
            items.Add(new TaskItem(halves[i].Head, choices, label));
        }
        return new TaskSet("builtin_cloze", TaskKind.MultipleChoice, items);
    }

    /// <summary>Predict each sentence's last word from the rest of it.</summary>
    public static TaskSet BuiltInLastWord() =>
        new("builtin_last_word", TaskKind.LastWord, Sentences().Distinct().Select(s => LastWord().Match(s)).Where(m => m.Success)
            .Select(m => new TaskItem(m.Groups[1].Value, [m.Groups[2].Value], 0)).Take(250).ToList());
}
