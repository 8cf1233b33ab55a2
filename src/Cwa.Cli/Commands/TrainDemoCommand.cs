using System.CommandLine;
using Cwa.Core.Checkpoints;
using Cwa.Core.Training;

namespace Cwa.Cli.Commands;

/// <summary>`cwa train-demo`: reproduces the built-in demo model (tokenizer + small Llama trained with AdamW).</summary>
internal static class TrainDemoCommand
{
    private static readonly Option<string> Out = new("--out", "-o") { Description = "Folder to write the trained model to (--out src/Cwa.Core/Models/Demo replaces the built-in demo at the next build).", DefaultValueFactory = _ => "demo-model" };
    private static readonly Option<int> Steps = new("--steps") { Description = "AdamW steps (the shipped demo: 600, early stopping kept step 200).", DefaultValueFactory = _ => 600 };
    private static readonly Option<int> BatchSize = new("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => 16 };
    private static readonly Option<double> LearningRate = new("--lr") { Description = "Peak learning rate (warmup, then cosine decay).", DefaultValueFactory = _ => 2e-3 };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed for initialisation and batch sampling.", DefaultValueFactory = _ => 42 };
    private static readonly Option<string> Dtype = new("--dtype") { Description = "Stored dtype of the result.", DefaultValueFactory = _ => "bf16" };

    public static Command Create()
    {
        var cmd = new Command("train-demo", "Train the small demo model on the built-in corpus (what `analyze` uses without --model).");
        foreach (var o in new Option[] { Out, Steps, BatchSize, LearningRate, Seed, Dtype, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var options = new DemoTrainingOptions(parse.GetValue(Out)!, parse.GetValue(Steps), parse.GetValue(BatchSize), LearningRate: parse.GetValue(LearningRate),
                Seed: (ulong)parse.GetValue(Seed), DType: DTypeInfo.Parse(parse.GetValue(Dtype)!));
            var r = ConsoleProgress.Run(parse, stdout, sink => DemoTrainer.Train(options, sink));
            stdout.WriteLine($"trained {r.Parameters:N0} parameters in {r.Seconds:F0} s: train loss {r.FirstLoss:F3} -> {r.FinalTrainLoss:F3}; kept step {r.BestStep} " +
                $"(validation perplexity {r.ValidationPerplexity:F1}); held-out perplexity {r.HeldOutPerplexity:F1} (uniform would be {r.UniformPerplexity:F0}); written to {options.OutDir}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
