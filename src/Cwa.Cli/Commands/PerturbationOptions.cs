using System.CommandLine;
using Cwa.Core.Perturbation;

namespace Cwa.Cli.Commands;

/// <summary>How weights are perturbed: shared by `analyze` (its top-k) and `perturb` (a given list).</summary>
internal static class PerturbationOptions
{
    public static readonly Option<string?> Perturb = new("--perturb") { Description = "How to perturb the selected weights before measuring held-out perplexity: zero, sign_flip, gauss_noise, bit_flip, scale, quantize." };
    public static readonly Option<double> PerturbScale = new("--perturb-scale") { Description = "gauss_noise sigma (relative to |w| unless --absolute-noise) or the scale factor.", DefaultValueFactory = _ => 1.0 };
    public static readonly Option<bool> AbsoluteNoise = new("--absolute-noise") { Description = "gauss_noise: --perturb-scale is an absolute sigma instead of relative to |w|." };
    public static readonly Option<double> PerturbProb = new("--perturb-prob") { Description = "Probability that each selected weight is perturbed (bit_flip: per weight).", DefaultValueFactory = _ => 1.0 };
    public static readonly Option<int?> Bit = new("--bit") { Description = "bit_flip: index of the bit to flip in the stored value (bf16: 15 = sign, 14..7 exponent)." };
    public static readonly Option<int> QuantBits = new("--quant-bits") { Description = "quantize: bits of the symmetric round-to-nearest grid (8, 4, 3 or 2).", DefaultValueFactory = _ => 4 };
    public static readonly Option<int> QuantGroup = new("--quant-group") { Description = "quantize: group size in input columns; each group's scale is its largest |w| (default 128, as RTN quantisers use).", DefaultValueFactory = _ => 128 };

    public static readonly Option[] All = [Perturb, PerturbScale, AbsoluteNoise, PerturbProb, Bit, QuantBits, QuantGroup];

    /// <summary>The perturbation these options describe (zero when --perturb is not given); checked against the model later.</summary>
    public static PerturbationSettings Read(ParseResult p) => new(
        PerturbationKinds.Parse(p.GetValue(Perturb) ?? "zero"), p.GetValue(PerturbScale), p.GetValue(AbsoluteNoise), p.GetValue(PerturbProb), p.GetValue(Bit),
        QuantBits: p.GetValue(QuantBits), QuantGroup: p.GetValue(QuantGroup));
}
