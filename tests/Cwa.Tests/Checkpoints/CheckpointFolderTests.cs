using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;
using Cwa.Core.Reporting;

namespace Cwa.Tests.Checkpoints;

public class CheckpointFolderTests
{
    internal static ModelConfig TinyConfig => TestModelPresets.Config("tiny", 300);

    internal static void WriteTiny(string dir, DType dtype = DType.F32, ulong seed = 1, ModelConfig? config = null) =>
        TestModelGenerator.Write(dir, config ?? TinyConfig, dtype, seed, "{}", "{}", minShards: 2);

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void GeneratedShardedModelReopensIdentically(DType dtype)
    {
        using var a = new TempDir();
        using var b = new TempDir();
        WriteTiny(a.Path, dtype, seed: 7);
        WriteTiny(b.Path, dtype, seed: 7);
        using var ca = CheckpointFolder.Open(a.Path);
        using var cb = CheckpointFolder.Open(b.Path);
        Assert.Equal(2, ca.ShardPaths.Count);
        Assert.Equal(TinyConfig with { TorchDtype = ca.Config.TorchDtype }, ca.Config);
        ca.ValidateLayout();
        foreach (var spec in LlamaLayout.Parameters(ca.Config))
        {
            var x = new float[spec.NumElements];
            var y = new float[spec.NumElements];
            ca.Read(spec.Name, x);
            cb.Read(spec.Name, y);
            Assert.Equal(x, y);
            Assert.Equal(dtype, ca.StoredType(spec.Name));
        }
        Assert.Equal(LlamaLayout.ParameterCount(TinyConfig), ca.TotalParameters);
        Assert.Equal(ca.ShardHeaderSha256, cb.ShardHeaderSha256);
        Assert.True(new DirectoryInfo(a.Path).GetFiles().Sum(f => f.Length) < 2_000_000);
    }

    [Fact]
    public void MissingFolderConfigShardAndShapeMismatchAreClearErrors()
    {
        using var dir = new TempDir();
        Assert.Contains("model folder not found", Assert.Throws<InputException>(() => CheckpointFolder.Open(dir.File("nope"))).Message);
        Assert.Contains("config.json not found", Assert.Throws<InputException>(() => CheckpointFolder.Open(dir.Path)).Message);

        WriteTiny(dir.Path);
        string shard = Directory.GetFiles(dir.Path, "*.safetensors")[0];
        File.Move(shard, shard + ".bak");
        var e = Assert.Throws<InputException>(() => CheckpointFolder.Open(dir.Path));
        Assert.Contains(CheckpointFolder.IndexFile, e.Message);
        Assert.Contains("missing", e.Message);
        File.Move(shard + ".bak", shard);

        // config.json that disagrees with the stored shapes
        AtomicFile.WriteAllText(Path.Combine(dir.Path, "config.json"), HfConfigWriter.ToJson(TinyConfig with { IntermediateSize = 100 }));
        using var c = CheckpointFolder.Open(dir.Path);
        var m = Assert.Throws<InputException>(() => c.ValidateLayout()).Message;
        Assert.Contains("has shape [176, 64] but config.json implies [100, 64]", m);
    }

    [Fact]
    public void FindsNonFiniteValues()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        using (var w = new SafeTensorsWriter(path, [("x", DType.BF16, [3])]))
        {
            w.Write("x", new float[] { 1, float.NaN, 2 });
            w.Commit();
        }
        AtomicFile.WriteAllText(dir.File("config.json"), HfConfigWriter.ToJson(TinyConfig));
        using var c = CheckpointFolder.Open(dir.Path);
        Assert.Equal(1, c.FindNonFinite("x"));
    }
}
