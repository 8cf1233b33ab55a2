using Cwa.Core.Checkpoints;

namespace Cwa.Core.Perturbation;

/// <summary>
/// How selected weights are changed. Scale: gauss_noise sigma (relative to |w| unless Absolute) or the factor of
/// `scale`. Probability: each selected weight is changed with this probability (seeded), else left alone.
/// Bit: bit of the held representation flipped by bit_flip (null = the top exponent bit, the most damaging
/// single flip). HeldType: the dtype the weights are held in (bf16/f16/f32) which defines that representation.
/// QuantBits / QuantGroup: quantize's grid (symmetric round-to-nearest per group of input columns, see RoundToNearest).
/// </summary>
public sealed record PerturbationSettings(
    PerturbationKind Kind,
    double Scale = 1.0,
    bool Absolute = false,
    double Probability = 1.0,
    int? Bit = null,
    DType HeldType = DType.F32,
    ulong Seed = 0,
    int QuantBits = 4,
    int QuantGroup = 128)
{
    public void Validate()
    {
        if (Probability is < 0 or > 1 || double.IsNaN(Probability))
            throw new InputException($"--perturb-prob must be between 0 and 1 (got {Probability})");
        if (Kind == PerturbationKind.GaussNoise && !(Scale >= 0))
            throw new InputException($"--perturb-scale must be a non-negative sigma for gauss_noise (got {Scale})");
        if (Kind == PerturbationKind.Quantize && !RoundToNearest.SupportedBits.Contains(QuantBits))
            throw new InputException($"--quant-bits must be one of {string.Join(", ", RoundToNearest.SupportedBits)} (got {QuantBits})");
        if (QuantGroup < 1) throw new InputException($"--quant-group must be at least 1 (got {QuantGroup})");
        if (Bit is int b && (b < 0 || b >= 8 * DTypeInfo.Size(HeldType)))
            throw new InputException($"--bit {b} is outside the {8 * DTypeInfo.Size(HeldType)}-bit {HeldType} representation");
    }
}
