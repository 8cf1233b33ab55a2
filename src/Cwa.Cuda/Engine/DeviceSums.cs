using Cwa.Core;
using Cwa.Core.Engine;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Engine;

/// <summary>
/// One tensor's gradient sums on the device while its block (or the head) is processed: Sum accumulates in place;
/// PerBatch accumulates a batch into its own buffer, then folds it into the total and the sum of squares
/// (<see cref="DeviceOps.FoldBatch"/>, the device form of <see cref="GradientSums"/>). Complete copies them to host sums.
/// </summary>
internal sealed class DeviceSums : IDisposable
{
    private readonly DeviceTensor _total;
    private readonly DeviceTensor? _squares, _batch;
    private GradientSums? _host;

    public DeviceSums(Accelerator acc, long length, Accumulation mode)
    {
        Mode = mode;
        Length = length;
        _total = new DeviceTensor(acc, length, StorageFormat.F32);
        if (mode == Accumulation.PerBatch)
        {
            _squares = new DeviceTensor(acc, length, StorageFormat.F32);
            _batch = new DeviceTensor(acc, length, StorageFormat.F32);
        }
        Clear();
    }

    public Accumulation Mode { get; }
    public long Length { get; }

    /// <summary>Bytes on the device for a tensor of this many elements.</summary>
    public static long Bytes(long length, Accumulation mode) => length * 4 * (mode == Accumulation.PerBatch ? 3 : 1);

    /// <summary>Where the engine accumulates a batch (beta = 1).</summary>
    public DeviceTensor Target => _batch ?? _total;

    public void Clear()
    {
        _total.Floats.MemSetToZero();
        _squares?.Floats.MemSetToZero();
        _batch?.Floats.MemSetToZero();
    }

    /// <summary>PerBatch: the batch's gradient into the sums (counted) or dropped; either way the batch buffer is zero after.</summary>
    public void EndBatch(DeviceOps ops, double scale, bool counted)
    {
        if (_batch == null) return;
        if (counted) ops.FoldBatch(_batch.Floats, _total.Floats, _squares!.Floats, (float)scale, Length);
        else _batch.Floats.MemSetToZero();
    }

    /// <summary>
    /// The sums on the host (reusing the previous host copy when it has the same shape). A batch's non-finite gradient
    /// stays non-finite in the sums, so it is refused here, for the tensor rather than the batch.
    /// </summary>
    public GradientSums Complete(string tensor)
    {
        if (_host == null || _host.Total.LongLength != Length || _host.Mode != Mode) _host = new GradientSums(Length, Mode);
        _total.Floats.CopyToCPU(_host.Total.AsSpan());
        if (_host.Squares != null) _squares!.Floats.CopyToCPU(_host.Squares.AsSpan());
        long bad = NonFinite.FirstIndex(_host.Total);
        if (bad < 0 && _host.Squares != null) bad = NonFinite.FirstIndex(_host.Squares);
        if (bad >= 0)
            throw new CwaException($"gradient of {tensor} not finite at flat index {bad} (summed over the calibration batches); check the model weights and data");
        return _host;
    }

    public void Dispose()
    {
        _total.Dispose();
        _squares?.Dispose();
        _batch?.Dispose();
    }
}
