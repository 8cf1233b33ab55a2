namespace Cwa.Core;

/// <summary>Parses a command-line name into the enum member at the same position of its names list.</summary>
public static class Choice
{
    public static TEnum Parse<TEnum>(string[] names, string value, string option, string noun) where TEnum : struct, Enum
    {
        int i = Array.IndexOf(names, value.Trim().ToLowerInvariant());
        return i >= 0
            ? (TEnum)Enum.ToObject(typeof(TEnum), i)
            : throw new InputException($"{option}: unknown {noun} '{value}' (valid: {string.Join(", ", names)})");
    }
}
