using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Pipeline;

/// <summary>
/// A model folder opened without reading a single weight: config.json, validated shard headers, the tokenizer and
/// the dtype the weights will be held in. Everything an analyze run can check before its heavy work is known here.
/// </summary>
public sealed class ModelSource : IDisposable
{
    public required string Path { get; init; }
    public required string DisplayName { get; init; }
    public required CheckpointFolder Checkpoint { get; init; }
    public required ITextTokenizer Tokenizer { get; init; }
    /// <summary>The dtype weights are held in (defines what bit_flip flips).</summary>
    public required DType HeldType { get; init; }
    public ModelConfig Config => Checkpoint.Config;
    public IReadOnlyList<ParameterSpec> Specs { get; private init; } = [];

    /// <param name="modelDir">null: the built-in demo model</param>
    /// <param name="dtype">--dtype (null: as stored)</param>
    public static ModelSource Open(string? modelDir, string? dtype)
    {
        string path = modelDir ?? DemoModel.Extract();
        var ckpt = CheckpointFolder.Open(path);
        try
        {
            ckpt.ValidateLayout();
            var tokenizer = TokenizerLoader.Load(path, ckpt.Config);
            if (tokenizer.VocabSize > ckpt.Config.VocabSize)
                throw new InputException($"{path}: tokenizer has {tokenizer.VocabSize} tokens but config.json says vocab_size {ckpt.Config.VocabSize}");
            var specs = LlamaLayout.Parameters(ckpt.Config);
            var held = dtype == null ? ckpt.StoredType(specs.First(s => s.Is2D).Name) : DTypeInfo.Parse(dtype);
            if (held == DType.F64) held = DType.F32;
            return new ModelSource { Path = path, DisplayName = modelDir ?? DemoModel.Name, Checkpoint = ckpt, Tokenizer = tokenizer, HeldType = held, Specs = specs };
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    public void Dispose() => Checkpoint.Dispose();
}
