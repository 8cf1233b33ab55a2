using Cwa.Core.Checkpoints;

namespace Cwa.Core.Perturbation;

/// <summary>
/// Bit-level view of a weight in the dtype the model is held in. A real bit flip must act on the stored
/// bf16/f16/f32 pattern, not on the fp32 working copy, or flipping e.g. bit 3 of a bf16 weight would be a no-op.
/// </summary>
public static class HeldValueBits
{
    public static int DefaultBit(DType t) => t switch
    {
        DType.BF16 => 14, // top exponent bit of bf16 (sign 15, exponent 14..7)
        DType.F16 => 14,  // top exponent bit of fp16 (sign 15, exponent 14..10)
        DType.F32 => 30,  // top exponent bit of fp32
        _ => 62,
    };

    public static float FlipBit(float value, int bit, DType held)
    {
        switch (held)
        {
            case DType.BF16:
            {
                ushort bits = DTypeConversion.FloatToBf16(value); // exact when the value came from a bf16 checkpoint
                return BitConverter.Int32BitsToSingle((bits ^ (1 << bit)) << 16);
            }
            case DType.F16:
            {
                ushort bits = BitConverter.HalfToUInt16Bits((Half)value);
                return (float)BitConverter.UInt16BitsToHalf((ushort)(bits ^ (1 << bit)));
            }
            case DType.F32:
                return BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(value) ^ (1 << bit));
            default:
                throw new InputException($"bit_flip is not defined for weights held as {held}");
        }
    }
}
