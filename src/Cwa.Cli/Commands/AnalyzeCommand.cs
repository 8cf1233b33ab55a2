using System.CommandLine;
using Cwa.Core.Pipeline;

namespace Cwa.Cli.Commands;

/// <summary>`cwa analyze`: the main job. Only option declarations and their mapping live here.</summary>
internal static class AnalyzeCommand
{
    private static readonly Option<string> Metric = new("--metric") { Description = "Score: grad_x_weight |G*W|, grad_squared G^2, fisher sum g_b^2, hutchinson_diag, obd 0.5*h*W^2, magnitude |W|, wanda |W|*||X||, act_outlier (super weights).", DefaultValueFactory = _ => "grad_x_weight" };
    private static readonly Option<string> Mode = new("--mode") { Description = "Ranking: per_layer (top-k per tensor), global (exact top-k over all weights), per_block (top-k per transformer block).", DefaultValueFactory = _ => "per_layer" };
    private static readonly Option<int> TopK = new("--topk", "-k") { Description = "How many weights to keep per tensor / block / globally.", DefaultValueFactory = _ => 100 };
    private static readonly Option<string[]> Seeds = new("--seeds") { Description = "Seed(s) for data shuffling and controls, e.g. 1,2,3. Several seeds resample the calibration data (stability).", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<string?> DataFile = new("--data-file") { Description = "Calibration texts: .txt (one per line), .jsonl or .parquet. Default: the built-in corpus." };
    private static readonly Option<string> TextField = new("--text-field") { Description = "Field (jsonl) or column (parquet) holding the text.", DefaultValueFactory = _ => "text" };
    private static readonly Option<string?> EvalFile = new("--eval-file") { Description = "Held-out texts for perplexity (default: held-out part of the data)." };
    private static readonly Option<int> MaxSamples = new("--max-samples") { Description = "Maximum number of calibration texts.", DefaultValueFactory = _ => 128 };
    private static readonly Option<int> MaxLength = new("--max-length") { Description = "Truncate each text to this many tokens.", DefaultValueFactory = _ => 256 };
    private static readonly Option<int> BatchSize = new("--batch-size") { Description = "Sequences per forward/backward batch.", DefaultValueFactory = _ => 8 };
    private static readonly Option<string> OutDir = new("--out-dir", "-o") { Description = "Output directory (created).", DefaultValueFactory = _ => "results" };
    private static readonly Option<bool> SavePlots = new("--save-plots") { Description = "Write PNG/SVG plots.", DefaultValueFactory = _ => true };
    private static readonly Option<bool> QuantizeAllButTop = new("--quantize-all-but-top") { Description = "quantize: also quantise every scored weight, then every one except the top-k, and report how much of the quantisation damage the top-k carry (dense-and-sparse)." };
    private static readonly Option<string[]> Controls = new("--controls") { Description = "Control sets to perturb alongside: random_k (as many random weights per tensor), bottom_k (the lowest-scoring), random_k_matched (random weights with the same |W| distribution as the top-k).", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<int> ControlSeeds = new("--control-seeds") { Description = "How many random_k draws (mean and 95% interval).", DefaultValueFactory = _ => 5 };
    private static readonly Option<string[]> KSweep = new("--k-sweep") { Description = "Dose-response: perturb the top-k for each k, e.g. 1,10,100,1000.", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<bool> StabilityCheck = new("--stability-check") { Description = "Compare top-k sets across seeds and disjoint data splits." };
    private static readonly Option<string> GradReduction = new("--grad-reduction") { Description = "sum (default; G = sum over batches of the batch-mean-loss gradient) or mean.", DefaultValueFactory = _ => "sum" };
    private static readonly Option<bool> Include1D = new("--include-1d") { Description = "Also score 1-D tensors (norms, biases)." };
    private static readonly Option<int> HutchinsonProbes = new("--hutchinson-probes") { Description = "Rademacher probes for hutchinson_diag.", DefaultValueFactory = _ => 4 };
    private static readonly Option<string> ObdCurvature = new("--obd-curvature") { Description = "Curvature for obd: fisher or hutchinson.", DefaultValueFactory = _ => "fisher" };
    private static readonly Option<bool> Recompute = new("--recompute") { Description = "Activation checkpointing per block: less memory, ~30% more compute." };
    private static readonly Option<string[]> DumpScores = new("--dump-scores")
    {
        Description = "Write every score: safetensors (default when no format is named: scores.safetensors, one F32 tensor per scored tensor) and/or parquet (scores.parquet: tensor,row,col,score,weight,gradient per weight of --dump-top / --dump-tensors).",
        Arity = ArgumentArity.ZeroOrMore, AllowMultipleArgumentsPerToken = true,
    };
    private static readonly Option<string?> KnownWeights = new("--known-weights") { Description = "Weights known to be critical (CSV or JSON: tensor,row,col[,label,source]), or 'builtin' for the published super weights of a model with this shape: reports recall@k for every ranking mode." };
    private static readonly Option<int> AblateEach = new("--ablate-each") { Description = "Perturb each of the N highest-scoring weights alone, then the top-1..N together (2N+1 held-out evaluations): how much single weights carry and whether they add up.", DefaultValueFactory = _ => 0 };
    private static readonly Option<int> EvalBatchSize = new("--eval-batch-size") { Description = "Held-out texts per evaluation batch when perturbing (default 1: the paired statistics compare text by text; larger is faster on a GPU).", DefaultValueFactory = _ => 1 };
    private static readonly Option<string?> Shard = new("--shard") { Description = "I/N or auto: compute only shard I of N of the calibration batches and write its partial sums (shard-I-of-N.safetensors) instead of the outputs; `cwa merge` combines them. auto reads a Slurm array task or a Kubernetes Indexed Job index." };
    private static readonly Option<int?> ShardCount = new("--shard-count") { Description = "--shard auto on Kubernetes: the number of shards (the Indexed Job's completions); also CWA_SHARD_COUNT." };
    private static readonly Option<string?> Tasks = new("--tasks") { Description = "Downstream tasks scored on the baseline, the perturbed top-k and every control: builtin or JSONL files (see cwa eval --tasks)." };
    private static readonly Option<int> DumpTop = new("--dump-top") { Description = "parquet dump: the top N weights of each scored tensor (0 = every weight; use with --dump-tensors).", DefaultValueFactory = _ => 1000 };
    private static readonly Option<string[]> DumpTensors = new("--dump-tensors") { Description = "parquet dump: only these tensors, e.g. model.layers.1.mlp.down_proj.weight (the model. prefix and .weight suffix may be left out).", AllowMultipleArgumentsPerToken = true };
    private static readonly Option<bool> SaveTokens = new("--save-tokens") { Description = "Write the calibration token ids, batch by batch, to calibration_tokens.jsonl (to reproduce the gradients elsewhere, e.g. in PyTorch)." };
    private static readonly Option<bool> SkipNonFinite = new("--skip-nonfinite") { Description = "Skip calibration batches whose loss or gradient is NaN/Inf (recorded in the manifest) instead of stopping." };
    private static readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Save the running gradient sums every N batches into the out dir, for --resume.", DefaultValueFactory = _ => 0 };
    private static readonly Option<bool> Resume = new("--resume") { Description = "Continue an interrupted run's gradient accumulation from its checkpoint (same arguments and out dir)." };

    public static Command Create()
    {
        var cmd = new Command("analyze", "Score, rank and report the critical weights of a model (default: the built-in demo model and corpus).");
        foreach (var o in new Option[] { CommonOptions.Model, CommonOptions.Device, CommonOptions.CudaLibDir, CommonOptions.Dtype, Metric, Mode, TopK, Seeds, DataFile, TextField, EvalFile, MaxSamples, MaxLength, BatchSize,
                     OutDir, SavePlots, PerturbationOptions.Perturb, PerturbationOptions.PerturbScale, PerturbationOptions.AbsoluteNoise, PerturbationOptions.PerturbProb, PerturbationOptions.Bit, PerturbationOptions.QuantBits, PerturbationOptions.QuantGroup, QuantizeAllButTop, Controls, ControlSeeds, KSweep, StabilityCheck, GradReduction,
                     Include1D, HutchinsonProbes, ObdCurvature, CommonOptions.Threads, Recompute, CommonOptions.Streaming, CommonOptions.MemoryBudget, DumpScores, DumpTop, DumpTensors, KnownWeights, AblateEach, EvalBatchSize, Shard, ShardCount, Tasks, SaveTokens, SkipNonFinite, CheckpointEvery, Resume, CommonOptions.ExperimentName, CommandRunner.Quiet, CommandRunner.Verbose })
            cmd.Add(o);
        CommandRunner.SetAction(cmd, (parse, stdout) =>
        {
            var request = ToRequest(parse);
            var (device, gpu) = DeviceChoice.Resolve(request.Device, parse.GetValue(CommonOptions.CudaLibDir));
            request = request with { Device = device };
            var summary = ConsoleProgress.Run(parse, stdout, sink => AnalysisPipeline.Run(request, sink, gpu));
            if (!parse.GetValue(CommandRunner.Quiet))
                SummaryPrinter.Print(summary, stdout);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    internal static AnalyzeRequest ToRequest(ParseResult p) => new()
    {
        Model = p.GetValue(CommonOptions.Model),
        Device = p.GetValue(CommonOptions.Device)!,
        Dtype = p.GetValue(CommonOptions.Dtype),
        Metric = p.GetValue(Metric)!,
        Mode = p.GetValue(Mode)!,
        TopK = CommonOptions.Positive(p.GetValue(TopK), "--topk"),
        Seeds = ListParser.Ints(p.GetValue(Seeds), "--seeds") is { Count: > 0 } s ? s : [42],
        DataFile = p.GetValue(DataFile),
        TextField = p.GetValue(TextField)!,
        EvalFile = p.GetValue(EvalFile),
        MaxSamples = CommonOptions.Positive(p.GetValue(MaxSamples), "--max-samples"),
        MaxLength = CommonOptions.Positive(p.GetValue(MaxLength), "--max-length", 2),
        BatchSize = CommonOptions.Positive(p.GetValue(BatchSize), "--batch-size"),
        OutDir = p.GetValue(OutDir)!,
        SavePlots = p.GetValue(SavePlots),
        Perturb = p.GetValue(PerturbationOptions.Perturb),
        PerturbScale = p.GetValue(PerturbationOptions.PerturbScale),
        PerturbAbsolute = p.GetValue(PerturbationOptions.AbsoluteNoise),
        PerturbProb = p.GetValue(PerturbationOptions.PerturbProb),
        Bit = p.GetValue(PerturbationOptions.Bit),
        QuantBits = p.GetValue(PerturbationOptions.QuantBits),
        QuantGroup = p.GetValue(PerturbationOptions.QuantGroup),
        QuantizeAllButTop = p.GetValue(QuantizeAllButTop),
        Controls = ListParser.Strings(p.GetValue(Controls)),
        ControlSeeds = CommonOptions.Positive(p.GetValue(ControlSeeds), "--control-seeds"),
        KSweep = ListParser.Ints(p.GetValue(KSweep), "--k-sweep", 1),
        StabilityCheck = p.GetValue(StabilityCheck),
        GradReduction = p.GetValue(GradReduction)!,
        Include1D = p.GetValue(Include1D),
        HutchinsonProbes = CommonOptions.Positive(p.GetValue(HutchinsonProbes), "--hutchinson-probes"),
        ObdCurvature = p.GetValue(ObdCurvature)!,
        Threads = CommonOptions.Positive(p.GetValue(CommonOptions.Threads), "--threads"),
        Recompute = p.GetValue(Recompute),
        Streaming = p.GetValue(CommonOptions.Streaming)!,
        MemoryBudget = SizeParser.Parse(p.GetValue(CommonOptions.MemoryBudget), "--memory-budget"),
        DumpScores = DumpFormats(p).Contains("safetensors"),
        ScoresParquet = DumpFormats(p).Contains("parquet") ? new Core.Ranking.DumpSelection(
            p.GetValue(DumpTop) >= 0 ? p.GetValue(DumpTop) : throw new Core.InputException($"--dump-top must be 0 (every weight) or more (got {p.GetValue(DumpTop)})"),
            ListParser.Strings(p.GetValue(DumpTensors)))
            : p.GetResult(DumpTop) is { Implicit: false } || p.GetResult(DumpTensors) is { Implicit: false } ? throw new Core.InputException("--dump-top and --dump-tensors apply to --dump-scores parquet") : null,
        SaveTokens = p.GetValue(SaveTokens),
        KnownWeights = p.GetValue(KnownWeights),
        Tasks = p.GetValue(Tasks),
        Shard = p.GetValue(Shard) is { } shard ? ShardSpec.Parse(shard, Environment.GetEnvironmentVariable, p.GetValue(ShardCount)) : null,
        EvalBatchSize = CommonOptions.Positive(p.GetValue(EvalBatchSize), "--eval-batch-size"),
        AblateEach = p.GetValue(AblateEach) >= 0 ? p.GetValue(AblateEach) : throw new Core.InputException($"--ablate-each must be 0 or more (got {p.GetValue(AblateEach)})"),
        SkipNonFinite = p.GetValue(SkipNonFinite),
        CheckpointEvery = p.GetValue(CheckpointEvery) >= 0 ? p.GetValue(CheckpointEvery) : throw new Core.InputException("--checkpoint-every must be 0 or more"),
        Resume = p.GetValue(Resume),
        ExperimentName = p.GetValue(CommonOptions.ExperimentName),
    };


    /// <summary>--dump-scores alone means safetensors, as before formats could be named.</summary>
    private static IReadOnlyList<string> DumpFormats(ParseResult p)
    {
        if (p.GetResult(DumpScores) is not { Implicit: false }) return [];
        var formats = ListParser.Strings(p.GetValue(DumpScores));
        if (formats.Count == 0) return ["safetensors"];
        foreach (var f in formats)
            if (f is not ("safetensors" or "parquet")) throw new Core.InputException($"--dump-scores: unknown format '{f}' (valid: safetensors, parquet)");
        return formats;
    }
}
