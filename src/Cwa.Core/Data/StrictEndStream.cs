namespace Cwa.Core.Data;

/// <summary>
/// A read-only file stream that throws when asked for bytes past its end instead of returning none. A corrupt
/// parquet footer can declare a list of two billion entries; the parquet reader then keeps reading "bytes" at the end
/// of the file for minutes. With this stream it fails as soon as it runs out of file.
/// </summary>
internal sealed class StrictEndStream(Stream inner) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => inner.CanSeek;
    public override bool CanWrite => false;
    public override long Length => inner.Length;
    public override long Position { get => inner.Position; set => inner.Position = value; }

    public override int Read(byte[] buffer, int offset, int count) => Checked(inner.Read(buffer, offset, count), count);
    public override int Read(Span<byte> buffer) => Checked(inner.Read(buffer), buffer.Length);

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Checked(await inner.ReadAsync(buffer, cancellationToken), buffer.Length);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int ReadByte() => inner.ReadByte() is var b and >= 0 ? b : throw Past();

    private static int Checked(int read, int asked) => read == 0 && asked > 0 ? throw Past() : read;

    private static EndOfStreamException Past() => new("the file ends where its metadata says more data follows");

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
