using System.CommandLine;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Tokenization;

namespace Cwa.Cli.Commands;

/// <summary>`cwa create-test-model`: a complete HF model folder with seeded random weights.</summary>
internal static class CreateTestModelCommand
{
    private static readonly Option<string> Preset = new("--preset") { Description = $"Architecture: {string.Join(", ", TestModelPresets.Names)}.", DefaultValueFactory = _ => "tiny" };
    private static readonly Option<string?> Dtype = new("--dtype") { Description = "Stored dtype: bf16, f16 or f32 (default: bf16 for llama-3.1-8b-shape, as the real model ships; f32 otherwise)." };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed for the weights.", DefaultValueFactory = _ => 0 };
    private static readonly Option<string> Out = new("--out", "-o") { Description = "Folder to write (created).", Required = true };

    public static Command Create()
    {
        var cmd = new Command("create-test-model", "Write a Hugging Face model folder (config, sharded safetensors, tokenizer) with random weights, for tests and benchmarks.");
        foreach (var o in new Option[] { Preset, Dtype, Seed, Out, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            string preset = parse.GetValue(Preset)!;
            var dtype = DTypeInfo.Parse(parse.GetValue(Dtype) ?? (preset == "llama-3.1-8b-shape" ? "bf16" : "f32"));
            string outDir = parse.GetValue(Out)!;
            if (File.Exists(outDir)) throw new InputException($"{outDir}: --out is a file, not a folder");
            // Small presets get a real BPE tokenizer trained on the built-in corpus; the 8B shape keeps Llama 3's vocabulary size.
            int vocab = preset switch { "tiny" => 512, "small" => 8192, "demo" => 2048, _ => 0 };
            var config = TestModelPresets.Config(preset, Math.Max(vocab, 259));
            EnsureDiskRoom(outDir, LlamaLayout.ParameterCount(config) * DTypeInfo.Size(dtype));
            TrainedTokenizer tok = ByteLevelBpeTrainer.Train(BuiltInCorpus.All, vocab > 0 ? vocab : 4096);
            if (vocab > 0) config = config with { BosTokenId = tok.BosId, EosTokenIds = [tok.EosId] };
            var sw = System.Diagnostics.Stopwatch.StartNew();
            ConsoleProgress.Run(parse, stdout, sink =>
            {
                using var phase = sink.Start("writing tensors", 1.0);
                double last = 0;
                TestModelGenerator.Write(outDir, config, dtype, (ulong)parse.GetValue(Seed), tok.TokenizerJson, tok.TokenizerConfigJson,
                    minShards: preset == "tiny" ? 2 : 1, progress: (name, f) => { phase.Describe(name); phase.Advance(f - last); last = f; });
                return 0;
            });
            if (!parse.GetValue(CommandRunner.Quiet))
                stdout.WriteLine($"wrote {preset} ({LlamaLayout.ParameterCount(config):N0} parameters, {dtype}) to {outDir} in {sw.Elapsed.TotalSeconds:F1} s");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>Refuses before writing when the folder's file system cannot hold the weights (16 GB for the 8B shape in bf16).</summary>
    private static void EnsureDiskRoom(string outDir, long bytes)
    {
        string full = Path.GetFullPath(outDir);
        string? existing = full;
        while (existing != null && !Directory.Exists(existing)) existing = Path.GetDirectoryName(existing);
        if (existing == null) return;
        long free = new DriveInfo(existing).AvailableFreeSpace;
        // A margin for the tokenizer, the index and the file system's own needs.
        if (bytes + (64L << 20) > free)
            throw new InputException($"{outDir}: the model needs about {MemoryEstimate.Format(bytes)} of disk but only {MemoryEstimate.Format(free)} is free there");
    }
}
