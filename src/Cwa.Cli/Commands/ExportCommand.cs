using System.CommandLine;
using System.Globalization;
using Cwa.Core.Export;
using Cwa.Core.Reporting;

namespace Cwa.Cli.Commands;

/// <summary>`cwa export RUN_DIR --format F`: a finished run as input for quantisers.</summary>
internal static class ExportCommand
{
    private static readonly Argument<string> RunDir = new("run-dir") { Description = "Folder of a finished analyze run (its top_weights.csv and sensitivity_stats.json)." };
    private static readonly Option<string> Format = new("--format", "-f") { Description = "mask (critical weights' coordinates and values, safetensors), llama-cpp (llama-quantize --tensor-type-file), gptqmodel (QuantizeConfig dynamic), llm-compressor (recipe with an ignore list).", Required = true };
    private static readonly Option<double> KeepFraction = new("--keep-fraction") { Description = "llama-cpp / gptqmodel / llm-compressor: at most this share of the scored weights is kept at higher precision, most sensitive per weight first.", DefaultValueFactory = _ => 0.1 };
    private static readonly Option<string> HighType = new("--high-type") { Description = "llama-cpp: ggml type of the kept tensors.", DefaultValueFactory = _ => "q8_0" };
    private static readonly Option<int> HighBits = new("--high-bits") { Description = "gptqmodel: bits of the kept modules (16 = leave them unquantised).", DefaultValueFactory = _ => 8 };
    private static readonly Option<string> Scheme = new("--scheme") { Description = "llm-compressor: quantisation scheme of everything else.", DefaultValueFactory = _ => "W4A16" };
    private static readonly Option<string?> Out = new("--out", "-o") { Description = "File to write (default: a name for the format in the current folder)." };

    public static Command Create()
    {
        var cmd = new Command("export", "Turn a finished run into what quantisers read: the critical weights as a mask, or which tensors to keep at higher precision for llama.cpp, GPTQModel or llm-compressor.");
        cmd.Add(RunDir);
        foreach (var o in new Option[] { Format, KeepFraction, HighType, HighBits, Scheme, Out, CommandRunner.Quiet, CommandRunner.Verbose }) cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            string run = parse.GetValue(RunDir)!, format = parse.GetValue(Format)!;
            if (!RunExport.Formats.Contains(format))
                throw new Core.InputException($"--format: unknown format '{format}' (valid: {string.Join(", ", RunExport.Formats)})");
            if (!Directory.Exists(run)) throw new Core.InputException($"{run}: run folder not found");
            string outPath = parse.GetValue(Out) ?? RunExport.DefaultFile(format);
            if (Directory.Exists(outPath)) throw new Core.InputException($"{outPath}: --out is a folder; name the file to write");
            string summary;
            if (format == "mask")
                summary = $"{RunExport.Mask(run, outPath):N0} critical weights";
            else
            {
                var plan = ExportPlan.Of(ExportPlan.Read(run), parse.GetValue(KeepFraction), RunExport.Candidates(format));
                AtomicFile.WriteAllText(outPath, format switch
                {
                    "llama-cpp" => RunExport.LlamaCpp(plan, parse.GetValue(HighType)!),
                    "gptqmodel" => RunExport.GptqModel(plan, parse.GetValue(HighBits)),
                    _ => RunExport.LlmCompressor(plan, parse.GetValue(Scheme)!),
                });
                summary = $"{plan.Kept.Count} of {plan.Tensors.Count} tensors kept: {plan.KeptScoreShare.ToString("P1", CultureInfo.InvariantCulture)} of the score in {plan.KeptWeightShare.ToString("P1", CultureInfo.InvariantCulture)} of the weights";
            }
            if (!parse.GetValue(CommandRunner.Quiet)) stdout.WriteLine($"{format}: {summary}, written to {outPath}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
