namespace Cwa.Core.Perturbation;

public enum PerturbationKind { Zero, SignFlip, GaussNoise, BitFlip, Scale, Quantize }

public static class PerturbationKinds
{
    public static readonly string[] Names = ["zero", "sign_flip", "gauss_noise", "bit_flip", "scale", "quantize"];

    public static PerturbationKind Parse(string name) => Choice.Parse<PerturbationKind>(Names, name, "--perturb", "perturbation");

    public static string Name(PerturbationKind k) => Names[(int)k];
}
