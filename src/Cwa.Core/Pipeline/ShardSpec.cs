namespace Cwa.Core.Pipeline;

/// <summary>
/// One shard of a sharded gradient pass: shard Index (1-based) of Count takes calibration batches b with
/// b mod Count = Index - 1. The partition depends only on the batch order, which the seed fixes.
/// </summary>
public sealed record ShardSpec(int Index, int Count)
{
    public string FileName => $"shard-{Index:D4}-of-{Count:D4}.safetensors";

    public IReadOnlyList<int> Batches(int total) => Enumerable.Range(0, total).Where(b => b % Count == Index - 1).ToList();

    /// <summary>
    /// "I/N", or "auto": a Slurm array task (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT) or a
    /// Kubernetes Indexed Job (JOB_COMPLETION_INDEX, 0-based, with the count from --shard-count or CWA_SHARD_COUNT).
    /// </summary>
    public static ShardSpec Parse(string text, Func<string, string?> env, int? count = null)
    {
        if (text == "auto")
        {
            if (env("SLURM_ARRAY_TASK_ID") is { } id)
            {
                int min = int.TryParse(env("SLURM_ARRAY_TASK_MIN"), out int m) ? m : 0;
                int n = count ?? (int.TryParse(env("SLURM_ARRAY_TASK_COUNT"), out int c) ? c
                    : throw new InputException("--shard auto: SLURM_ARRAY_TASK_COUNT is not set; pass --shard-count"));
                return Checked(Int(id, "SLURM_ARRAY_TASK_ID") - min + 1, n, "--shard auto (Slurm)");
            }
            if (env("JOB_COMPLETION_INDEX") is { } index)
            {
                int n = count ?? (int.TryParse(env("CWA_SHARD_COUNT"), out int c) ? c
                    : throw new InputException("--shard auto: a Kubernetes Indexed Job needs the completion count: pass --shard-count or set CWA_SHARD_COUNT"));
                return Checked(Int(index, "JOB_COMPLETION_INDEX") + 1, n, "--shard auto (Kubernetes)");
            }
            throw new InputException("--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm array job) nor JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; use --shard I/N");
        }
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int i) || !int.TryParse(parts[1], out int total))
            throw new InputException($"--shard expects I/N (e.g. 2/8) or auto (got '{text}')");
        return Checked(i, total, "--shard");
    }

    private static int Int(string v, string name) =>
        int.TryParse(v, out int x) ? x : throw new InputException($"--shard auto: {name}='{v}' is not an integer");

    private static ShardSpec Checked(int index, int count, string what) =>
        count >= 1 && index >= 1 && index <= count ? new ShardSpec(index, count)
            : throw new InputException($"{what}: shard {index} of {count} is not in 1..{Math.Max(count, 1)}");
}
