namespace Cwa.Core.Perturbation;

public enum PerturbationKind { Zero, SignFlip, GaussNoise, BitFlip, Scale }

public static class PerturbationKinds
{
    public static readonly string[] Names = ["zero", "sign_flip", "gauss_noise", "bit_flip", "scale"];

    public static PerturbationKind Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "zero" => PerturbationKind.Zero,
        "sign_flip" => PerturbationKind.SignFlip,
        "gauss_noise" => PerturbationKind.GaussNoise,
        "bit_flip" => PerturbationKind.BitFlip,
        "scale" => PerturbationKind.Scale,
        _ => throw new InputException($"--perturb: unknown perturbation '{name}' (valid: {string.Join(", ", Names)})"),
    };

    public static string Name(PerturbationKind k) => Names[(int)k];
}
