using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Cwa.Core.Engine;

/// <summary>
/// Hidden states of every batch of a layer-major pass, one slot per (level, batch) of [rows, hidden] floats: level
/// l holds block l's input, the last level the gradient flowing back. In process memory when the pass's memory
/// budget allows, otherwise in a memory-mapped scratch file (deleted when the store is disposed): the kernel then
/// pages it to disk, and its pages count as file cache rather than process memory.
/// </summary>
internal sealed unsafe class HiddenStore : IDisposable
{
    private readonly SlotLayout _layout;
    private readonly float* _base;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly string? _path;
    private bool _disposed;

    public long Bytes => _layout.Bytes;
    public bool Spilled => _map != null;

    /// <param name="scratchPath">file to spill to when the store exceeds memoryBudget (null: never spill)</param>
    public HiddenStore(IReadOnlyList<int> rowsPerBatch, int dim, int levels, long memoryBudget, string? scratchPath)
    {
        _layout = new SlotLayout(rowsPerBatch, dim, levels);
        if (scratchPath == null || Bytes <= memoryBudget)
        {
            _base = (float*)NativeMemory.Alloc((nuint)Bytes);
            return;
        }
        _path = scratchPath;
        try
        {
            _map = MemoryMappedFile.CreateFromFile(scratchPath, FileMode.CreateNew, null, Bytes, MemoryMappedFileAccess.ReadWrite);
            _view = _map.CreateViewAccessor(0, Bytes, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = (float*)(p + _view.PointerOffset);
        }
        catch (IOException e)
        {
            Dispose();
            throw new CwaException($"{scratchPath}: cannot create the {Bytes / (double)(1L << 30):F2} GiB scratch file for hidden states ({e.Message}); free disk space or raise --memory-budget");
        }
    }

    /// <summary>The [rows, hidden] slot of one batch at one level.</summary>
    public Span<float> Slot(int level, int batch)
    {
        return new Span<float>(_base + _layout.Start(level, batch), _layout.Length(batch));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        if (_map != null)
        {
            _map.Dispose();
            if (_path != null) File.Delete(_path);
        }
        else if (_base != null) NativeMemory.Free(_base);
    }
}
