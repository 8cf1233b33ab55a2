using Cwa.Core.Checkpoints;

namespace Cwa.Core.Engine;

/// <summary>op(B)'s storage as <see cref="Sgemm"/> reads it: packed into panels, or whole for the reference loop.</summary>
internal interface IGemmB<TSelf> where TSelf : struct, IGemmB<TSelf>
{
    /// <summary>The same matrix from element offset on (a thread's share of the columns).</summary>
    TSelf Skip(long offset);

    /// <summary>op(B)[p0.., j0..] into panels of nr columns, as <see cref="Packing.PackB(bool, float[], int, int, int, int, int, int, int, float[], int)"/> lays them out.</summary>
    void Pack(bool transB, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset);

    /// <summary>B as fp32 values from the returned offset, for products too small for the packed path.</summary>
    (float[] Array, int Offset) Dense(bool transB, int n, int k, int ldb);
}

internal readonly struct FloatB(float[] array, int offset) : IGemmB<FloatB>
{
    public FloatB Skip(long by) => new(array, checked(offset + (int)by));

    public void Pack(bool transB, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset) =>
        Packing.PackB(transB, array, offset, ldb, p0, kc, j0, nc, nr, dest, destOffset);

    public (float[] Array, int Offset) Dense(bool transB, int n, int k, int ldb) => (array, offset);
}

/// <summary>
/// A bf16 matrix in memory Sgemm does not own (a streamed checkpoint's mapping): read as B, it is widened to fp32
/// panel by panel while being packed, so the product is bit for bit the one on its fp32 widening.
/// </summary>
internal readonly unsafe struct Bf16Matrix(ushort* data, long length) : IGemmB<Bf16Matrix>
{
    public long Length => length;

    public Bf16Matrix Skip(long by) =>
        by >= 0 && by <= length ? new(data + by, length - by) : throw new ArgumentOutOfRangeException(nameof(by));

    public void Pack(bool transB, int ldb, int p0, int kc, int j0, int nc, int nr, float[] dest, int destOffset)
    {
        long last = transB ? (long)(j0 + nc - 1) * ldb + p0 + kc : (long)(p0 + kc - 1) * ldb + j0 + nc;
        if (last > length) throw new ArgumentOutOfRangeException(nameof(nc), $"a {kc} x {nc} block at ({p0}, {j0}) reads past the {length} values of B");
        Packing.PackB(transB, data, ldb, p0, kc, j0, nc, nr, dest, destOffset);
    }

    public (float[] Array, int Offset) Dense(bool transB, int n, int k, int ldb)
    {
        long extent = transB ? (long)(n - 1) * ldb + k : (long)(k - 1) * ldb + n;
        if (extent > length) throw new ArgumentOutOfRangeException(nameof(n), $"op(B) of {k} x {n} reads past the {length} values of B");
        var values = new float[extent];
        DTypeConversion.Bf16ToFloat(new ReadOnlySpan<ushort>(data, checked((int)extent)), values);
        return (values, 0);
    }
}
