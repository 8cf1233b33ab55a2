using System.Text;
using Cwa.Core;
using Cwa.Core.Checkpoints;

namespace Cwa.Tests.Checkpoints;

/// <summary>Each malformed file must give one InputException line that names the file.</summary>
public class MalformedSafeTensorsTests
{
    private static byte[] Build(string header, int dataBytes, long? lyingLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BitConverter.GetBytes(lyingLength ?? h.Length).CopyTo(bytes, 0);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "truncated", "data ends at byte" },
        { "overlap", "overlaps" },
        { "gap", "belong to no tensor" },
        { "past-eof", "past the end of the 8-byte data section" },
        { "lying-length", "larger than the file" },
        { "huge-header", "exceeds" },
        { "wrong-bytes", "needs 16" },
        { "duplicate", "appears twice" },
        { "bad-json", "not valid JSON" },
        { "unknown-dtype", "unsupported dtype I8" },
        { "too-short", "fewer than the 8-byte" },
        { "missing-offsets", "lacks data_offsets" },
        { "not-object", "not a JSON object" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MalformedFileGivesOneLineNamingTheFile(string kind, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File(kind + ".safetensors");
        byte[] bytes = kind switch
        {
            "truncated" => Build("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8),
            "overlap" => Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12),
            "past-eof" => Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[100,108]}}""", 8),
            "gap" => Build("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}""", 20),
            "lying-length" => Build("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, lyingLength: 5000),
            "huge-header" => Build("{}", 0, lyingLength: 200L * 1024 * 1024),
            "wrong-bytes" => Build("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}""", 12),
            "duplicate" => Build("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8),
            "bad-json" => Build("""{"a":{"dtype":"F32",""", 0),
            "unknown-dtype" => Build("""{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}""", 1),
            "too-short" => [1, 2, 3],
            "missing-offsets" => Build("""{"a":{"dtype":"F32","shape":[1]}}""", 4),
            "not-object" => Build("[1,2]", 0),
            _ => throw new ArgumentException(kind),
        };
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InputException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(2, e.ExitCode);
    }
}
