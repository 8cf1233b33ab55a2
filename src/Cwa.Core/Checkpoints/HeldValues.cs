namespace Cwa.Core.Checkpoints;

/// <summary>
/// Weights as the engine holds them: widened from the checkpoint and rounded to the held dtype (--dtype). NaN/Inf in
/// the checkpoint, and finite values the held dtype cannot represent (above 65504 for f16), are refused by name.
/// </summary>
internal static class HeldValues
{
    /// <param name="start">flat index of values[0] in the tensor (for the message)</param>
    public static void Prepare(CheckpointFolder ckpt, string name, long start, Span<float> values, DType held)
    {
        long bad = NonFinite.FirstIndexParallel(values, Engine.Gemm.MaxThreads);
        if (bad >= 0) throw NotFinite(ckpt, name, start + bad);
        // Values read from a tensor stored as the held dtype are already exact in it.
        if (ckpt.StoredType(name) == held) return;
        DTypeConversion.RoundTo(values, held);
        bad = NonFinite.FirstIndexParallel(values, Engine.Gemm.MaxThreads);
        if (bad < 0) return;
        Span<float> original = stackalloc float[1];
        ckpt.ReadRange(name, start + bad, original);
        throw new InputException($"{ckpt.ShardOf(name)}: tensor {name} holds {original[0]:G9} at flat index {start + bad}, which overflows --dtype {held.ToString().ToLowerInvariant()}; use bf16 or f32");
    }

    /// <summary>The refusal of a checkpoint value that is NaN or infinite, by shard, tensor and flat index.</summary>
    public static InputException NotFinite(CheckpointFolder ckpt, string name, long index) =>
        new($"{ckpt.ShardOf(name)}: tensor {name} holds a non-finite value at flat index {index}");
}
