namespace Cwa.Core.Ranking;

public enum RankingMode { PerLayer, Global, PerBlock }

public enum ControlKind { RandomK, BottomK, RandomKMatched }

public static class RankingModes
{
    public static readonly string[] Names = ["per_layer", "global", "per_block"];
    public static readonly string[] ControlNames = ["random_k", "bottom_k", "random_k_matched"];

    public static RankingMode Parse(string name) => Choice.Parse<RankingMode>(Names, name, "--mode", "mode");

    public static string Name(this RankingMode m) => Names[(int)m];

    public static ControlKind ParseControl(string name) => Choice.Parse<ControlKind>(ControlNames, name, "--controls", "control");

    public static string Name(this ControlKind c) => ControlNames[(int)c];
}
