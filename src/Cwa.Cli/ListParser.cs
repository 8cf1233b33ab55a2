using Cwa.Core;

namespace Cwa.Cli;

/// <summary>Parses comma-separated (and repeated) list options such as --seeds 1,2,3 or --controls random_k,bottom_k.</summary>
internal static class ListParser
{
    public static IReadOnlyList<string> Strings(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();

    public static IReadOnlyList<int> Ints(string[]? values, string optionName, int min = int.MinValue)
    {
        var result = new List<int>();
        foreach (var s in Strings(values))
        {
            if (!int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v) || v < min)
                throw new InputException($"{optionName}: '{s}' is not a whole number{(min > int.MinValue ? $" >= {min}" : "")}");
            result.Add(v);
        }
        return result;
    }
}
