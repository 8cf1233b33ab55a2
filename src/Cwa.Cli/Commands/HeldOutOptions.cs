using System.CommandLine;

namespace Cwa.Cli.Commands;

/// <summary>The held-out texts `eval` and `perturb` measure NLL, perplexity and accuracy on.</summary>
internal static class HeldOutOptions
{
    public static readonly Option<string?> DataFile = new("--data-file", "--eval-file") { Description = "Texts to evaluate on (.txt/.jsonl/.parquet). Default: the built-in held-out texts." };
    public static readonly Option<string> TextField = new("--text-field") { Description = "Field/column holding the text.", DefaultValueFactory = _ => "text" };
    public static readonly Option<int> MaxLength = new("--max-length") { Description = "Truncate texts to this many tokens.", DefaultValueFactory = _ => 256 };
    public static readonly Option<int> BatchSize = new("--batch-size") { Description = "Sequences per batch.", DefaultValueFactory = _ => 8 };
}
