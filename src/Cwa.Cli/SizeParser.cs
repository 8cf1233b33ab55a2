using System.Globalization;
using Cwa.Core;

namespace Cwa.Cli;

/// <summary>Memory sizes on the command line: 8G, 8GiB, 512M, 1.5g, 1073741824 (units are powers of 1024).</summary>
internal static class SizeParser
{
    public static long? Parse(string? text, string optionName)
    {
        if (text == null) return null;
        string s = text.Trim();
        int end = s.Length;
        while (end > 0 && char.IsLetter(s[end - 1])) end--;
        string unit = s[end..].ToUpperInvariant().TrimEnd('B').TrimEnd('I');
        int shift = unit switch { "" => 0, "K" => 10, "M" => 20, "G" => 30, "T" => 40, _ => -1 };
        if (shift < 0 || !double.TryParse(s[..end], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v) || v <= 0
            || v * Math.Pow(2, shift) >= long.MaxValue)
            throw new InputException($"{optionName}: '{text}' is not a size (examples: 8G, 512M, 1.5GiB)");
        return (long)(v * Math.Pow(2, shift));
    }
}
