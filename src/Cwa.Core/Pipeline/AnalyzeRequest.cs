using Cwa.Core.Ranking;

namespace Cwa.Core.Pipeline;

/// <summary>Everything an analyze run needs, already validated by the CLI layer's parsers.</summary>
public sealed record AnalyzeRequest
{
    /// <summary>Model folder; null = the built-in demo model.</summary>
    public string? Model { get; init; }
    public string Device { get; init; } = "auto";
    /// <summary>Precision the weights are held in (null = as stored). Arithmetic is fp32 on CPU.</summary>
    public string? Dtype { get; init; }
    public string Metric { get; init; } = "grad_x_weight";
    public string Mode { get; init; } = "per_layer";
    public int TopK { get; init; } = 100;
    public IReadOnlyList<int> Seeds { get; init; } = [42];
    /// <summary>Null = the built-in corpus.</summary>
    public string? DataFile { get; init; }
    public string TextField { get; init; } = "text";
    public string? EvalFile { get; init; }
    public int MaxSamples { get; init; } = 128;
    public int MaxLength { get; init; } = 256;
    public int BatchSize { get; init; } = 8;
    public string OutDir { get; init; } = "results";
    public bool SavePlots { get; init; } = true;
    public string? Perturb { get; init; }
    public double PerturbScale { get; init; } = 1.0;
    /// <summary>gauss_noise sigma is absolute rather than relative to |w|.</summary>
    public bool PerturbAbsolute { get; init; }
    public double PerturbProb { get; init; } = 1.0;
    public int? Bit { get; init; }
    /// <summary>quantize: bits of the symmetric round-to-nearest grid and the group size in input columns.</summary>
    public int QuantBits { get; init; } = 4;
    public int QuantGroup { get; init; } = 128;
    /// <summary>quantize: also quantise every scored weight, and every one except the top-k (dense-and-sparse split).</summary>
    public bool QuantizeAllButTop { get; init; }

    /// <summary>The perturbation these options describe, for weights held in heldType (what bit_flip flips).</summary>
    public Perturbation.PerturbationSettings PerturbationSettingsFor(Perturbation.PerturbationKind kind, Checkpoints.DType heldType, ulong seed = 0) =>
        new(kind, PerturbScale, PerturbAbsolute, PerturbProb, Bit, heldType, seed, QuantBits, QuantGroup);
    public IReadOnlyList<string> Controls { get; init; } = [];
    public int ControlSeeds { get; init; } = 5;
    public IReadOnlyList<int> KSweep { get; init; } = [];
    public bool StabilityCheck { get; init; }
    public string GradReduction { get; init; } = "sum";
    public bool Include1D { get; init; }
    public int HutchinsonProbes { get; init; } = 4;
    public string ObdCurvature { get; init; } = "fisher";
    public int Threads { get; init; } = Environment.ProcessorCount;
    public bool Recompute { get; init; }
    /// <summary>Layer streaming: "auto" (when the in-memory run does not fit the budget), "on" or "off".</summary>
    public string Streaming { get; init; } = "auto";
    /// <summary>Bytes the run may use (null: the memory available to the process).</summary>
    public long? MemoryBudget { get; init; }
    public bool DumpScores { get; init; }
    /// <summary>--dump-scores parquet: which weights scores.parquet holds (null: no Parquet dump).</summary>
    public DumpSelection? ScoresParquet { get; init; }
    /// <summary>--known-weights: a CSV/JSON of weights known to be critical, or "builtin" (published super weights); recall@k is reported.</summary>
    public string? KnownWeights { get; init; }
    /// <summary>--ablate-each N: perturb each of the global top-N alone, and the top-1..N jointly (0: off).</summary>
    public int AblateEach { get; init; }
    /// <summary>Held-out texts per evaluation batch in perturbation runs (1: paired statistics per text).</summary>
    public int EvalBatchSize { get; init; } = 1;
    /// <summary>--shard I/N: compute only this shard's partial sums and write them instead of the outputs.</summary>
    public ShardSpec? Shard { get; init; }
    /// <summary>--tasks: downstream task sets scored on the baseline, the top-k and every control (builtin or JSONL files).</summary>
    public string? Tasks { get; init; }
    /// <summary>cwa merge: the shard files whose summed partial sums replace the gradient pass.</summary>
    public IReadOnlyList<string> MergeShards { get; init; } = [];
    /// <summary>Write the calibration batches' token ids to calibration_tokens.jsonl (to reproduce G elsewhere).</summary>
    public bool SaveTokens { get; init; }
    /// <summary>Skip (and record) calibration batches whose loss or gradient is NaN/Inf instead of stopping.</summary>
    public bool SkipNonFinite { get; init; }
    /// <summary>Save the running gradient sums every N calibration batches (0 = only with --resume, every 25).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Continue an interrupted run from the checkpoint in the out dir.</summary>
    public bool Resume { get; init; }
    public string? ExperimentName { get; init; }
}
