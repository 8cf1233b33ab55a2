using Cwa.Core.Checkpoints;

namespace Cwa.Tests.Checkpoints;

public class SafeTensorsRoundTripTests
{
    private static readonly float[] Values = [0f, -0f, 1f, -2.5f, 3.14159265f, 1e-8f, 65504f, -1e30f, 0.1f, 123.456f, float.NaN, float.PositiveInfinity];

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F64)]
    public void EveryDtypeRoundTrips(DType dtype)
    {
        using var dir = new TempDir();
        string path = dir.File("t.safetensors");
        var doubles = new[] { 1.0 / 3, -7.25, 1e-300, 2.0 };
        using (var w = new SafeTensorsWriter(path, [("a", dtype, [3, 4]), ("b", dtype, [4])], new Dictionary<string, string> { ["format"] = "pt" }))
        {
            w.Write("a", Values);
            w.Write("b", doubles);
            w.Commit();
        }
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(["a", "b"], f.Names);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal([3L, 4L], f.Shape("a"));
        Assert.Equal(dtype, f.StoredType("a"));
        var back = new float[12];
        f.Read("a", back);
        for (int i = 0; i < Values.Length; i++)
            Assert.Equal(Expected(Values[i], dtype), back[i]);
        var backD = new double[4];
        f.Read("b", backD);
        for (int i = 0; i < doubles.Length; i++)
            Assert.Equal(dtype == DType.F64 ? doubles[i] : Expected((float)doubles[i], dtype), backD[i]);
    }

    private static float Expected(float v, DType t) => t switch
    {
        DType.F16 => (float)(Half)v,
        DType.BF16 => BitConverter.UInt32BitsToSingle((uint)DTypeConversion.FloatToBf16(v) << 16),
        _ => v,
    };

    [Theory]
    [InlineData(0x3F808000u, (ushort)0x3F80)] // exact tie, even lower half -> stays
    [InlineData(0x3F818000u, (ushort)0x3F82)] // exact tie, odd -> rounds up to even
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above the tie -> up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below the tie -> down
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // max float rounds to +inf, as torch does
    public void Bf16RoundsToNearestEven(uint bits, ushort expected) =>
        Assert.Equal(expected, DTypeConversion.FloatToBf16(BitConverter.UInt32BitsToSingle(bits)));

    [Fact]
    public void Bf16KeepsNaN() => Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle((uint)DTypeConversion.FloatToBf16(float.NaN) << 16)));

    [Fact]
    public void DisposeWithoutCommitLeavesNoFile()
    {
        using var dir = new TempDir();
        string path = dir.File("x.safetensors");
        using (var w = new SafeTensorsWriter(path, [("a", DType.F32, [2])]))
            w.Write("a", new float[] { 1, 2 });
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void MetadataLargerThanTheReservedRoomIsWrittenIntoANewFileWithTheDataIntact()
    {
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        var values = Enumerable.Range(0, 1000).Select(i => i * 0.5f).ToArray();
        using (var w = new SafeTensorsWriter(path, [("b", DType.F32, [1000]), ("a", DType.F64, [3])], new Dictionary<string, string> { ["k"] = "v" }, reserveHeaderBytes: 16))
        {
            w.Write("a", new double[] { 1, 2, 3 });
            w.Write("b", values);
            w.Commit(new Dictionary<string, string> { ["k"] = new string('x', 5000), ["more"] = "y" });
        }
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "*.tmp-*"));
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(5000, f.Metadata["k"].Length);
        Assert.Equal("y", f.Metadata["more"]);
        var back = new float[1000];
        f.Read("b", back);
        Assert.Equal(values, back);
        var a = new double[3];
        f.Read("a", a);
        Assert.Equal([1.0, 2, 3], a);
    }

    /// <summary>Widening is a 16-bit shift, done a vector at a time (the machine's width) with a scalar tail: every length agrees.</summary>
    [Fact]
    public void Bf16WideningIsTheShiftAtEveryLength()
    {
        var rng = new Cwa.Core.SplitMix64(5);
        for (int n = 0; n <= 70; n++)
        {
            var bits = Enumerable.Range(0, n).Select(_ => (ushort)rng.NextLong(65536)).ToArray();
            var widened = new float[n];
            DTypeConversion.Bf16ToFloat(bits, widened);
            for (int i = 0; i < n; i++) Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(widened[i]));
        }
    }
}
