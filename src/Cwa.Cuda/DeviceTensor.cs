using Cwa.Core.Checkpoints;
using Cwa.Cuda.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda;

/// <summary>How a tensor's elements are stored on the device; the values are HalfBits' format codes (-1 = fp32).</summary>
public enum StorageFormat { F32 = -1, Bf16 = HalfBits.Bf16, F16 = HalfBits.F16 }

public static class StorageFormats
{
    public static StorageFormat Of(DType held) => held switch
    {
        DType.BF16 => StorageFormat.Bf16,
        DType.F16 => StorageFormat.F16,
        _ => StorageFormat.F32,
    };

    public static int Bytes(this StorageFormat f) => f == StorageFormat.F32 ? 4 : 2;
}

/// <summary>
/// A flat tensor resident on the device, fp32 or as bf16/fp16 bit patterns (weights keep their checkpoint dtype;
/// activations and gradients are fp32).
/// </summary>
public sealed class DeviceTensor : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _f32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _half;

    public StorageFormat Format { get; }
    public long Length { get; }
    public long Bytes => Length * Format.Bytes();

    public DeviceTensor(Accelerator acc, long length, StorageFormat format)
    {
        Format = format;
        Length = length;
        if (format == StorageFormat.F32) _f32 = acc.Allocate1D<float>(Math.Max(1, length));
        else _half = acc.Allocate1D<ushort>(Math.Max(1, length));
    }

    public ArrayView<float> Floats => _f32 != null ? _f32.View.SubView(0, Length) : throw new InvalidOperationException($"tensor is stored as {Format}, not fp32");
    public ArrayView<ushort> Halves => _half != null ? _half.View.SubView(0, Length) : throw new InvalidOperationException("tensor is stored as fp32, not half");

    /// <summary>This tensor as a matrix operand with the given element offset and row stride.</summary>
    public Operand At(long offset, int ld) => Format == StorageFormat.F32 ? Operand.Float(Floats, offset, ld) : Operand.Half(Halves, Format, offset, ld);

    public void Dispose()
    {
        _f32?.Dispose();
        _half?.Dispose();
    }
}

/// <summary>
/// One GEMM input: a device view holding fp32 or half bit patterns, the element offset of the matrix in it and
/// its row stride. Exactly one of the two views is used, as Format says.
/// </summary>
public readonly record struct Operand(ArrayView<float> F32, ArrayView<ushort> HalfBits, StorageFormat Format, long Offset, int Ld)
{
    public static Operand Float(ArrayView<float> v, long offset, int ld) => new(v, default, StorageFormat.F32, offset, ld);
    public static Operand Half(ArrayView<ushort> v, StorageFormat format, long offset, int ld) => new(default, v, format, offset, ld);

    /// <summary>Device address of element 0 of the matrix (for cuBLAS).</summary>
    public IntPtr Address => Format == StorageFormat.F32 ? DeviceAddress.Of(F32, Offset) : DeviceAddress.Of(HalfBits, Offset);
}

public static class DeviceAddress
{
    /// <summary>Native (device) address of element `offset` of a view, as cuBLAS takes it.</summary>
    public static IntPtr Of<T>(ArrayView<T> view, long offset) where T : unmanaged =>
        ((IArrayView)view).Buffer.NativePtr + (nint)(((IContiguousArrayView)view).IndexInBytes + offset * System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
}
