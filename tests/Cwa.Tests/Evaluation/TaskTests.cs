using System.Text.Json;
using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Evaluation;
using Cwa.Core.Pipeline;

namespace Cwa.Tests.Evaluation;

public class TaskTests
{
    private static string Write(TempDir dir, string name, params object[] lines)
    {
        File.WriteAllLines(dir.File(name), lines.Select(l => l as string ?? JsonSerializer.Serialize(l)));
        return dir.File(name);
    }

    [Fact]
    public void TheTrainedDemoPrefersTheTextItLearnedOverGibberish()
    {
        // Known answers: a sentence of the calibration corpus continues with its own second half, not with letter soup.
        var sentences = BuiltInCorpus.Calibration.Take(12).Select(t => t.Split(". ")[0].Split(' ')).Where(w => w.Length >= 8).Take(8).ToList();
        var items = sentences.Select((w, i) =>
        {
            string head = string.Join(' ', w[..(w.Length / 2)]), tail = " " + string.Join(' ', w[(w.Length / 2)..]);
            var choices = new List<string> { " qzx vvkj wqp xzzq jjw", " kkq pxv zzt qqw vvb" };
            choices.Insert(i % 3, tail);
            return new TaskItem(head, choices, i % 3);
        }).ToList();
        using var model = LoadedModel.Open(null, null, "cpu", new EngineOptions(2), new NullProgress());
        var result = TaskEvaluator.Run(model.Backend, model.Tokenizer, new TaskSet("known", TaskKind.MultipleChoice, items), 256);
        Assert.Equal(items.Count, result.Items);
        Assert.Equal(1.0, result.Accuracy);
        Assert.Equal(1.0, result.AccuracyNorm);
    }

    [Fact]
    public void TheBuiltInSetsHaveEnoughItemsAndScoreInRange()
    {
        var sets = TaskItems.Load(TaskItems.BuiltIn);
        Assert.Equal(["builtin_cloze", "builtin_last_word"], sets.Select(s => s.Name));
        Assert.All(sets, s => Assert.True(s.Items.Count >= 200, $"{s.Name}: {s.Items.Count} items"));
        // Built from held-out texts only: no calibration text contains a cloze context.
        var calibration = string.Join("\n", BuiltInCorpus.Calibration);
        Assert.All(sets[0].Items.Take(50), i => Assert.DoesNotContain(i.Context + i.Choices[i.Label], calibration));
        using var model = LoadedModel.Open(null, null, "cpu", new EngineOptions(2), new NullProgress());
        var lastWord = TaskEvaluator.Run(model.Backend, model.Tokenizer, new TaskSet("lw", TaskKind.LastWord, sets[1].Items.Take(40).ToList()), 256);
        Assert.InRange(lastWord.Accuracy, 0, 1);
        Assert.True(lastWord.TargetNll > 0 && double.IsFinite(lastWord.TargetNll!.Value));
        Assert.Null(lastWord.AccuracyNorm);
    }

    [Fact]
    public void TaskFilesInBothShapesAreRead()
    {
        using var dir = new TempDir();
        var mc = TaskItems.Read(Write(dir, "hellaswag.jsonl", new { ctx = "A man sits", endings = new[] { " down.", " up." }, label = "0" }, new { context = "B", choices = new[] { " x", " y", " z" }, label = 2 }));
        Assert.Equal(("hellaswag", TaskKind.MultipleChoice, 2), (mc.Name, mc.Kind, mc.Items.Count));
        Assert.Equal(2, mc.Items[1].Label);
        var lw = TaskItems.Read(Write(dir, "lambada.jsonl", new { text = "She opened the door and greeted her friend Anna." }));
        Assert.Equal(("She opened the door and greeted her friend", " Anna"), (lw.Items[0].Context, lw.Items[0].Choices[0]));
    }

    [Theory]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 2}", "t.jsonl:1: 'label' must be the index of the right choice, 0..1")]
    [InlineData("{\"choices\": [\" b\", \" c\"], \"label\": 0}", "t.jsonl:1: no 'context'")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\"], \"label\": 0}", "t.jsonl:1: a multiple-choice item needs at least 2 choices")]
    [InlineData("{\"text\": \"oneword\"}", "t.jsonl:1: the text needs a context and a final word")]
    [InlineData("{\"question\": 1}", "t.jsonl:1: neither a multiple-choice item")]
    [InlineData("not json", "t.jsonl:1: not valid JSON")]
    [InlineData("{\"text\": \"a b c\"}\n{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0}", "t.jsonl:2: a task file holds one kind of item")]
    [InlineData("", "t.jsonl: the task file has no items")]
    public void BadTaskFilesAreInputErrors(string content, string message)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("t.jsonl"), content);
        Assert.Contains(message, Assert.Throws<InputException>(() => TaskItems.Read(dir.File("t.jsonl"))).Message);
    }

    [Fact]
    public void EvalReportsTasksAndRefusesAMissingFileBeforeLoading()
    {
        using var dir = new TempDir();
        var (code, stdout, err) = EndToEnd.Cli.Run("eval", "--device", "cpu", "--tasks", Write(dir, "mc.jsonl", new { context = "The harbor", choices = new[] { " town", " qzx" }, label = 0 }));
        Assert.True(code == 0, err);
        Assert.Contains("task mc (multiple choice, 1 items): acc ", stdout);
        (code, _, err) = EndToEnd.Cli.Run("eval", "--device", "cpu", "--tasks", dir.File("none.jsonl"));
        Assert.Equal(2, code);
        Assert.Contains("none.jsonl: task file not found", err);
    }

    [Fact]
    public void AnalyzeScoresTasksOnTheBaselineTheTopKAndTheControls()
    {
        using var dir = new TempDir();
        using var tiny = new EndToEnd.TinyModelFixture();
        string tasks = Write(dir, "mc.jsonl", new { context = "The harbor town", choices = new[] { " opens", " zz" }, label = 0 }, new { context = "A", choices = new[] { " b", " c", " d" }, label = 1 });
        var (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("out"), "--quiet", "--save-plots", "false", "--max-samples", "8",
            "--max-length", "32", "--topk", "5", "--perturb", "zero", "--controls", "random_k", "--control-seeds", "2", "--tasks", tasks);
        Assert.True(code == 0, err);
        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("out"), "experiment_manifest.json")));
        var results = m.RootElement.GetProperty("results");
        foreach (var key in new[] { "task_mc_acc_baseline", "task_mc_acc_top_k", "task_mc_acc_random_k_mean" })
            Assert.InRange(results.GetProperty(key).GetDouble(), 0, 1);
        using var p = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("out"), "perturbation_results.json")));
        Assert.Equal(2, p.RootElement.GetProperty("top_k_run").GetProperty("tasks")[0].GetProperty("items").GetInt32());
        Assert.Equal(2, p.RootElement.GetProperty("controls")[0].GetProperty("runs").EnumerateArray().Count(r => r.GetProperty("tasks").GetArrayLength() == 1));

        var (evalCode, evalOut, evalErr) = EndToEnd.Cli.Run("eval", "--model", tiny.Model, "--device", "cpu", "--tasks", tasks);
        Assert.True(evalCode == 0, evalErr);
        Assert.Contains("task mc (multiple choice, 2 items): acc ", evalOut);

        (code, _, err) = EndToEnd.Cli.Run("analyze", "--model", tiny.Model, "--out-dir", dir.File("o2"), "--tasks", tasks);
        Assert.Equal(2, code);
        Assert.Contains("--tasks scores the baseline against the perturbed sets: add --perturb", err);
    }
}
