using Cwa.Core.Perturbation;

namespace Cwa.Core.Pipeline;

/// <summary>Everything `cwa perturb` was asked to do: which weights, how to perturb them, and on which held-out texts.</summary>
public sealed record PerturbRequest
{
    public string? Model { get; init; }
    public required string Targets { get; init; }
    /// <summary>Perturb each target alone (restoring in between) instead of all of them jointly.</summary>
    public bool Each { get; init; }
    /// <summary>How to perturb; HeldType and Seed are filled in from the model and --seed.</summary>
    public PerturbationSettings Settings { get; init; } = new(PerturbationKind.Zero);
    public int Seed { get; init; } = 42;
    /// <summary>random_k draws per measured set: as many random weights in the same tensors (0: none).</summary>
    public int ControlSeeds { get; init; }
    public string? DataFile { get; init; }
    public string TextField { get; init; } = "text";
    public int MaxLength { get; init; } = 256;
    public int BatchSize { get; init; } = 8;
    public string? Dtype { get; init; }
    public string Device { get; init; } = "cpu";
    public int Threads { get; init; }
    public string Streaming { get; init; } = "auto";
    public long? MemoryBudget { get; init; }
    public string OutDir { get; init; } = "perturb-results";
    public string? ExperimentName { get; init; }
}
