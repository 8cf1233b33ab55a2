using CsCheck;
using Cwa.Core;
using Cwa.Core.Data;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Tokenization;
using Cwa.Tests.Tokenization;
using Parquet;
using Parquet.Schema;

namespace Cwa.Tests.Fuzz;

/// <summary>
/// Mutation fuzzing of the other files a user hands cwa: tokenizer.json, tokenizer.model, parquet datasets and the
/// gradient checkpoint. Any mutation must load (and work) or fail with an InputException: one line, exit code 2.
/// </summary>
public class FileFuzzTests
{
    /// <summary>Delete a span and insert a few characters at one place: mutations that keep most of the structure.</summary>
    private static Gen<string> Mutated(string valid, string alphabet) =>
        Gen.Select(Gen.Int[0, valid.Length - 1], Gen.Int[0, 30], Gen.String[Gen.Char[alphabet], 0, 6])
            .Select((pos, del, insert) => valid.Remove(pos, Math.Min(del, valid.Length - pos)).Insert(pos, insert));

    private static Gen<byte[]> Mutated(byte[] valid) =>
        Gen.Select(Gen.Int[0, valid.Length - 1].Array[1, 6], Gen.Byte.Array[1, 6], Gen.Int[0, 2], Gen.Int[0, valid.Length])
            .Select((positions, values, kind, cut) =>
            {
                var b = (byte[])valid.Clone();
                for (int i = 0; i < positions.Length; i++) b[positions[i]] = values[i % values.Length];
                return kind == 0 ? b[..cut] : b;
            });

    private static void OnlyInputErrors(Action load)
    {
        try { load(); }
        catch (InputException e) { Assert.DoesNotContain('\n', e.Message); }
    }

    private static readonly ModelConfig Config = TestModelPresets.Config("tiny", 300);

    [Fact]
    public void TokenizerJsonOnlyThrowsInputErrors()
    {
        using var dir = new TempDir();
        string valid = ByteLevelBpeTrainer.Train(BuiltInCorpus.All.Take(40), 300).TokenizerJson;
        Mutated(valid, "{}[]\":,0123456789 abn\\").Sample(json =>
        {
            string folder = dir.File(Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json);
            OnlyInputErrors(() => TokenizerLoader.Load(folder, Config).Encode("fuzzed text, 123"));
        }, iter: 300);
    }

    [Fact]
    public void SentencePieceModelOnlyThrowsInputErrors()
    {
        using var dir = new TempDir();
        var valid = SentencePieceModelBuilder.Build(["▁the", "▁a", "an", "th"]);
        Mutated(valid).Sample(bytes =>
        {
            string folder = dir.File(Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), bytes);
            OnlyInputErrors(() => TokenizerLoader.Load(folder, Config).Encode("the ant"));
        }, iter: 400);
    }

    private static async Task<byte[]> ValidParquet()
    {
        var field = new DataField<string>("text");
        using var ms = new MemoryStream();
        await using (var writer = await ParquetWriter.CreateAsync(new ParquetSchema(field), ms))
        {
            using var g = writer.CreateRowGroup();
            await g.WriteAsync(field, new[] { "one text", "another text", "third" }, null);
        }
        return ms.ToArray();
    }

    [Fact]
    public async Task ParquetReaderOnlyThrowsInputErrors()
    {
        using var dir = new TempDir();
        var valid = await ValidParquet();
        // Pages and truncations here. Footer mutations can make the parquet library spin for minutes; cwa bounds
        // that with its footer check and a watchdog, but a spinning thread cannot be stopped and would slow every
        // later test, so the footer's own fuzzing is the regression test below and the check's bounded walker.
        int footer = BitConverter.ToInt32(valid, valid.Length - 8) + 8;
        var pages = Gen.Select(Gen.Int[4, valid.Length - footer - 1].Array[1, 6], Gen.Byte.Array[1, 6], Gen.Int[0, 3], Gen.Int[0, valid.Length])
            .Select((positions, values, kind, cut) =>
            {
                var b = (byte[])valid.Clone();
                for (int i = 0; i < positions.Length; i++) b[positions[i]] = values[i % values.Length];
                return kind == 0 ? b[..cut] : b;
            });
        pages.Sample(bytes =>
        {
            string p = dir.File(Guid.NewGuid().ToString("N") + ".parquet");
            File.WriteAllBytes(p, bytes);
            OnlyInputErrors(() => TextSource.Read(p));
        }, iter: int.Parse(Environment.GetEnvironmentVariable("CWA_FUZZ_PARQUET") ?? "300"));
    }

    /// <summary>A mutated file on which the parquet library spun for minutes (found by this fuzzing): refused at once.</summary>
    [Fact]
    public void AParquetFooterThatRunsOutIsRefusedInsteadOfHanging()
    {
        using var dir = new TempDir();
        string p = dir.File("damaged.parquet");
        File.WriteAllBytes(p, Convert.FromBase64String("UEFSMRUAFVYVWiwVBhUAFQYVBhwYBXRoaXJkGAxhbm90aGVyjHRleHQWACgFdGhpcmQYDGFub3RoZXIgdGV4dAAAALGoAgAAAAYBCAAAAG9uZSB0ZXh0DAAAAGFub3RoZXIgdGV4dAUAAAB0aGlyZBUCGSxIBHJvb3QVAgAVDCUCGAR0ZXh0JQBMHAAAABYGGRwZHCYIHBUMGSUABhkYBHRleHQVAhYGFtQBFtgBJgg8GAV0aGlyZBgMYW5vdGhlciB0ZXh0FgAoBXRoaXJkGAxhbm90aGVyIHRleHQAAAAW1AEWBjbYAQAoSlBhcnF1ZXQuTmV0IHZlcnNpb24gNi4xLjAgKGJ1aWxkIGMxNzlkOTdiZDI1NDliNWY0NGE5MjQxZTcyOWY4NjlkNDk0N2VlNTkpMcYAAABQQVIx"));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<InputException>(() => TextSource.Read(p));
        Assert.Contains("damaged.parquet: cannot read parquet file (its footer metadata is damaged", e.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }

    [Fact]
    public void GradientCheckpointOnlyThrowsInputErrorsAndNeverDeliversDamage()
    {
        using var dir = new TempDir();
        IReadOnlyList<ParameterSpec> specs = [new("a", [3, 4], ParameterRole.QProj, 0, "q"), new("b", [5], ParameterRole.InputNorm, 0, "n")];
        string validPath = dir.File("valid.safetensors");
        new GradientCheckpoint(validPath, "key", 2).Save(new CheckpointPosition(3, 2.5, 40, ["batch 1: loss NaN"]), specs,
            (t, into) => { for (int i = 0; i < into.Length; i++) into[i] = t + i * 0.5f; }, null);
        var valid = File.ReadAllBytes(validPath);
        Mutated(valid).Sample(bytes =>
        {
            string p = dir.File(Guid.NewGuid().ToString("N") + ".safetensors");
            File.WriteAllBytes(p, bytes);
            var got = new Dictionary<int, float[]>();
            OnlyInputErrors(() =>
            {
                var pos = new GradientCheckpoint(p, "key", 2).Load(specs, 10, (t, v) => got[t] = v.ToArray(), null);
                // Whatever loads must be exactly what was saved: a mutation that passes every check changed nothing that matters.
                Assert.Equal(3, pos!.NextBatch);
                Assert.Equal(Enumerable.Range(0, 12).Select(i => i * 0.5f), got[0]);
            });
            File.Delete(p);
        }, iter: 600);
    }
}
