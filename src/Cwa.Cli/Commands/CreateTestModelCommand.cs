using System.CommandLine;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Cli.Commands;

/// <summary>`cwa create-test-model`: a complete HF model folder with seeded random weights.</summary>
internal static class CreateTestModelCommand
{
    private static readonly Option<string> Preset = new("--preset") { Description = $"Architecture: {string.Join(", ", TestModelPresets.Names)}.", DefaultValueFactory = _ => "tiny" };
    private static readonly Option<string?> Dtype = new("--dtype") { Description = "Stored dtype: bf16, f16 or f32 (default: bf16 for the llama-3.1-*-shape presets, as the real models ship; f32 otherwise)." };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed for the weights.", DefaultValueFactory = _ => 0 };
    private static readonly Option<string?> Plant = new("--plant-super-weight") { Description = "LAYER,ROW,COL: plant a super weight at mlp.down_proj [ROW, COL] of that layer (not the last): a massive output on the BOS token that the next layer makes every token depend on, so the model cannot live without it (ground truth for tests; see README)." };
    private static readonly Option<bool> FromDemo = new("--from-demo") { Description = "Start from the built-in trained demo model instead of random weights (with --plant-super-weight: a trained model with known ground truth)." };
    private static readonly Option<string> Out = new("--out", "-o") { Description = "Folder to write (created).", Required = true };

    public static Command Create()
    {
        var cmd = new Command("create-test-model", "Write a Hugging Face model folder (config, sharded safetensors, tokenizer) with random weights, for tests and benchmarks.");
        foreach (var o in new Option[] { Preset, Dtype, Seed, Plant, FromDemo, Out, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            string preset = parse.GetValue(Preset)!;
            var dtype = parse.GetValue(Dtype) is { } d ? DTypeInfo.Parse(d) : TestModelGenerator.DefaultDType(preset);
            string outDir = parse.GetValue(Out)!;
            if (string.IsNullOrWhiteSpace(outDir)) throw new InputException("--out must not be empty");
            if (File.Exists(outDir)) throw new InputException($"{outDir}: --out is a file, not a folder");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var config = ConsoleProgress.Run(parse, stdout, sink =>
            {
                using var phase = sink.Start("writing tensors", 1.0);
                double last = 0;
                void Progress(string name, double f) { phase.Describe(name); phase.Advance(f - last); last = f; }
                return parse.GetValue(FromDemo)
                    ? TestModelGenerator.WriteFromDemo(outDir, dtype, parse.GetValue(Plant), Progress)
                    : TestModelGenerator.WritePreset(outDir, preset, dtype, (ulong)parse.GetValue(Seed), Progress, parse.GetValue(Plant));
            });
            if (!parse.GetValue(CommandRunner.Quiet))
                stdout.WriteLine($"wrote {(parse.GetValue(FromDemo) ? "the trained demo" : preset)}{(parse.GetValue(Plant) is { } p ? $" with a super weight at layer,row,col {p}" : "")} ({LlamaLayout.ParameterCount(config):N0} parameters, {dtype}) to {outDir} in {sw.Elapsed.TotalSeconds:F1} s");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
