namespace Cwa.Core.Ranking;

public enum RankingMode { PerLayer, Global, PerBlock }

public enum ControlKind { RandomK, BottomK }

public static class RankingModes
{
    public static readonly string[] Names = ["per_layer", "global", "per_block"];
    public static readonly string[] ControlNames = ["random_k", "bottom_k"];

    public static RankingMode Parse(string name)
    {
        int i = Array.IndexOf(Names, name.Trim().ToLowerInvariant());
        return i >= 0 ? (RankingMode)i : throw new InputException($"--mode: unknown mode '{name}' (valid: {string.Join(", ", Names)})");
    }

    public static string Name(this RankingMode m) => Names[(int)m];

    public static ControlKind ParseControl(string name)
    {
        int i = Array.IndexOf(ControlNames, name.Trim().ToLowerInvariant());
        return i >= 0 ? (ControlKind)i : throw new InputException($"--controls: unknown control '{name}' (valid: {string.Join(", ", ControlNames)})");
    }

    public static string Name(this ControlKind c) => ControlNames[(int)c];
}
