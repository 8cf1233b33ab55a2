using System.Text;
using CsCheck;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Data;

namespace Cwa.Tests.Fuzz;

/// <summary>
/// Property-based fuzzing of everything that parses user files: any input must either parse or fail with an
/// InputException (a one-line message and exit code 2) — never another exception type, a crash or a hang.
/// Inputs are mutations of valid files, which reach far deeper into the parsers than random bytes do.
/// </summary>
public class ParserFuzzTests
{
    private static readonly byte[] ValidSafeTensors = BuildValid();

    private static byte[] BuildValid()
    {
        using var dir = new TempDir();
        string p = dir.File("v.safetensors");
        using (var w = new SafeTensorsWriter(p, [("a", DType.BF16, [2, 3]), ("b", DType.F32, [4])], new Dictionary<string, string> { ["format"] = "pt" }))
        {
            w.Write("a", new float[6]);
            w.Write("b", new float[] { 1, 2, 3, 4 });
            w.Commit();
        }
        return File.ReadAllBytes(p);
    }

    private static readonly Gen<byte[]> MutatedSafeTensors =
        Gen.Select(Gen.Int[0, ValidSafeTensors.Length - 1].Array[1, 8], Gen.Byte.Array[1, 8], Gen.Int[0, 3], Gen.Int[0, ValidSafeTensors.Length])
            .Select((positions, values, kind, cut) =>
            {
                var b = (byte[])ValidSafeTensors.Clone();
                for (int i = 0; i < positions.Length; i++) b[positions[i]] = values[i % values.Length];
                return kind switch { 0 => b[..Math.Min(cut, b.Length)], 1 => [.. b, .. values], _ => b };
            });

    [Fact]
    public void SafeTensorsHeaderParserOnlyThrowsInputErrors()
    {
        using var dir = new TempDir();
        MutatedSafeTensors.Sample(bytes =>
        {
            // CsCheck samples on several threads: every sample gets its own file, because rewriting a file that
            // another thread has memory-mapped would truncate it under the mapping.
            string p = dir.File(Guid.NewGuid().ToString("N") + ".safetensors");
            File.WriteAllBytes(p, bytes);
            try
            {
                using var f = SafeTensorsFile.Open(p);
                foreach (var n in f.Names) f.Read(n, new float[f.Info(n).ElementCount]);
            }
            catch (InputException e)
            {
                Assert.DoesNotContain('\n', e.Message);
            }
            finally
            {
                File.Delete(p);
            }
        }, iter: 1500);
    }

    private const string ValidConfig = """
        {"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,
         "num_key_value_heads":2,"rope_scaling":{"rope_type":"llama3","factor":8.0},"eos_token_id":[1,2],"bos_token_id":0,"tie_word_embeddings":true}
        """;

    [Fact]
    public void ConfigParserOnlyThrowsInputErrors()
    {
        Gen.Select(Gen.Int[0, ValidConfig.Length - 1], Gen.Int[0, 40], Gen.String[Gen.Char["{}[]\":,0123456789-.eatrulnf "], 0, 6])
            .Sample((pos, del, insert) =>
            {
                string json = ValidConfig.Remove(pos, Math.Min(del, ValidConfig.Length - pos)).Insert(pos, insert);
                try { HfConfigReader.Parse(json, "config.json"); }
                catch (InputException) { }
            }, iter: 2500);
    }

    [Fact]
    public void JsonlReaderOnlyThrowsInputErrors()
    {
        using var dir = new TempDir();
        Gen.String[Gen.Char["{}[]\":,ab\\ \ntext0123"], 0, 80].Sample(content =>
        {
            string p = dir.File(Guid.NewGuid().ToString("N") + ".jsonl");
            File.WriteAllText(p, content, Encoding.UTF8);
            try { TextSource.Read(p); }
            catch (InputException e) { Assert.DoesNotContain('\n', e.Message); }
        }, iter: 1500);
    }
}
