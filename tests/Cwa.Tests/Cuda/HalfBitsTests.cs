using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Cuda;
using Cwa.Cuda.Kernels;

namespace Cwa.Tests.Cuda;

/// <summary>The device's integer-only half conversions agree bit for bit with the host's (System.Half, Core's bf16).</summary>
public sealed class HalfBitsTests : AcceleratorTest
{
    /// <summary>Ordinary values, ties, subnormals of both formats, overflow edges, infinities and NaN.</summary>
    private static float[] Samples()
    {
        var r = new SplitMix64(77);
        var list = new List<float> { 0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, 1e6f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f, 1e-9f, 1e-40f,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.MaxValue, float.Epsilon, 1.00390625f, 1.01171875f, 3.0517578e-5f };
        for (int i = 0; i < 20000; i++)
        {
            uint bits = (uint)r.NextULong();
            float f = BitConverter.UInt32BitsToSingle(bits);
            list.Add(f);
            list.Add((float)(r.NextGaussian() * Math.Pow(2, r.NextLong(60) - 40)));
        }
        return list.ToArray();
    }

    [Theory]
    [InlineData(StorageFormat.Bf16)]
    [InlineData(StorageFormat.F16)]
    public void RoundingToHalfMatchesTheHostOnHostAndDevice(StorageFormat format)
    {
        var x = Samples();
        var expected = x.Select(v => format == StorageFormat.Bf16 ? DTypeConversion.FloatToBf16(v) : BitConverter.HalfToUInt16Bits((Half)v)).ToArray();
        var host = x.Select(v => HalfBits.FromFloat(v, (int)format)).ToArray();
        var dst = Run.Up(new ushort[x.Length]);
        Run.Ops.ToHalf(Run.Up(x), dst, format, x.Length);
        var device = KernelRunner.Down(dst, x.Length);
        for (int i = 0; i < x.Length; i++)
        {
            bool nan = float.IsNaN(x[i]);
            Assert.True(nan ? IsNaN(host[i], format) && IsNaN(device[i], format) : host[i] == expected[i] && device[i] == expected[i],
                $"{x[i]:R} ({BitConverter.SingleToUInt32Bits(x[i]):X8}): expected {expected[i]:X4}, host {host[i]:X4}, device {device[i]:X4}");
        }
    }

    [Theory]
    [InlineData(StorageFormat.Bf16)]
    [InlineData(StorageFormat.F16)]
    public void EveryHalfPatternWidensExactly(StorageFormat format)
    {
        var bits = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        var dst = Run.Up(new float[bits.Length]);
        Run.Ops.FromHalf(Run.Up(bits), dst, format, bits.Length);
        var device = KernelRunner.Down(dst, bits.Length);
        var expected = new float[bits.Length];
        if (format == StorageFormat.Bf16) DTypeConversion.Bf16ToFloat(bits, expected);
        else for (int i = 0; i < bits.Length; i++) expected[i] = (float)BitConverter.UInt16BitsToHalf(bits[i]);
        for (int i = 0; i < bits.Length; i++)
            Assert.True(float.IsNaN(expected[i]) ? float.IsNaN(device[i]) : BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(device[i]),
                $"{i:X4}: expected {expected[i]:R}, device {device[i]:R}");
    }

    private static bool IsNaN(ushort h, StorageFormat f) => f == StorageFormat.Bf16 ? (h & 0x7FFF) > 0x7F80 : (h & 0x7FFF) > 0x7C00;
}
