namespace Cwa.Core.Engine;

/// <summary>
/// Where the slots of a layer-major store lie in one flat array of floats: one slot per (level, batch) of rows x
/// width values, level after level, each level's batches in order (so one level's slots are contiguous).
/// </summary>
internal sealed class SlotLayout
{
    private readonly long[] _batchStart;

    public SlotLayout(IReadOnlyList<int> rowsPerBatch, int width, int levels)
    {
        _batchStart = new long[rowsPerBatch.Count + 1];
        for (int b = 0; b < rowsPerBatch.Count; b++) _batchStart[b + 1] = _batchStart[b] + (long)rowsPerBatch[b] * width;
        LevelFloats = _batchStart[^1];
        Levels = levels;
    }

    public int Levels { get; }
    /// <summary>Floats of one level (every batch's slot).</summary>
    public long LevelFloats { get; }
    /// <summary>Bytes of the whole store, at least 1 (so an empty store can still be allocated).</summary>
    public long Bytes => Math.Max(1, LevelFloats * Levels * sizeof(float));

    /// <summary>Index of the first float of a slot.</summary>
    public long Start(int level, int batch) => level * LevelFloats + _batchStart[batch];

    /// <summary>Floats in one batch's slot.</summary>
    public int Length(int batch) => checked((int)(_batchStart[batch + 1] - _batchStart[batch]));
}
