using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Cwa.Core;
using Cwa.Core.Checkpoints;
using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>The buffers of a layer-major pass: per-batch gradient sums, kept activations and the background page reader.</summary>
public class StreamingBuffersTests
{
    private const int Length = 3 * (1 << 16) + 17; // spans several of EndBatch's parallel chunks

    private static float[] Values(ulong seed, int n)
    {
        var rng = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
    }

    [Fact]
    public void PerBatchSumsAddScaledValuesAndSquaresBitForBitAndLeaveTheBatchBufferZero()
    {
        var sums = new GradientSums(Length, Accumulation.PerBatch);
        // Two blocks through the same sums: the second block's first batch overwrites what the first block left.
        for (int block = 0; block < 2; block++)
        {
            sums.Clear();
            var total = new float[Length];
            var squares = new float[Length];
            for (int b = 0; b < 3; b++)
            {
                var g = Values((ulong)(10 * block + b + 1), Length);
                g[0] = -0f; // signed zeros in every batch sum to +0, as they do added to zeros
                sums.StartBatch();
                g.CopyTo(sums.Target, 0);
                sums.EndBatch(0.25, b, "t");
                TensorPrimitives.MultiplyAdd(g, g, squares, squares);
                TensorPrimitives.MultiplyAdd(g, 0.25f, total, total);
                Assert.All(sums.Target, v => Assert.Equal(0f, v));
            }
            Assert.True(MemoryMarshal.AsBytes(total.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(sums.Total.AsSpan())));
            Assert.True(MemoryMarshal.AsBytes(squares.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(sums.Squares.AsSpan())));
        }
    }

    [Fact]
    public void ClearedPerBatchSumsReadAsZeroUntilAWholeBatchAndAPartIsAddedToZeros()
    {
        var sums = new GradientSums(Length, Accumulation.PerBatch);
        sums.StartBatch();
        Array.Fill(sums.Target, 3f);
        sums.EndBatch(1, 0, "t");
        sums.Clear();
        Assert.All(sums.Total, v => Assert.Equal(0f, v));
        Assert.All(sums.Squares!, v => Assert.Equal(0f, v));
        sums.StartBatch();
        Array.Fill(sums.Target, 3f);
        sums.EndBatch(1, 0, "t");
        sums.Clear();
        var g = Values(9, 100);
        sums.AddBatch(50, g, 0, g.Length, 1, 1, "t");
        for (int i = 0; i < Length; i++)
            Assert.Equal(i >= 50 && i < 150 ? g[i - 50] : 0f, sums.Total[i]);
    }

    [Fact]
    public void SumsClearedForOverwritingKeepWhatTheFirstBatchWroteAndReadAsZeroWithoutOne()
    {
        var sums = new GradientSums(Length, Accumulation.Sum);
        Array.Fill(sums.Target, 2f); // the previous block's gradient
        sums.Clear(overwritten: true);
        Assert.True(sums.HoldsNoBatch);
        Assert.Equal(2f, sums.Target[5]); // not swept: the first batch writes it whole
        var g = Values(3, Length);
        g.CopyTo(sums.Target, 0);
        sums.EndBatch(1, 0, "t");
        Assert.False(sums.HoldsNoBatch);
        Assert.True(g.AsSpan().SequenceEqual(sums.Total));

        sums.Clear(overwritten: true);
        Assert.All(sums.Total, v => Assert.Equal(0f, v)); // no batch came: reading settles to zeros
        Assert.False(sums.HoldsNoBatch);
        Array.Fill(sums.Target, 4f);
        sums.Clear();
        Assert.False(sums.HoldsNoBatch);
        Assert.All(sums.Target, v => Assert.Equal(0f, v)); // a plain Clear zeroes what the engine adds to
    }

    [Fact]
    public void ModelSizedArraysComeZeroedEvenFromMemoryTheCollectorReuses()
    {
        foreach (long length in new[] { 17L, (64L << 20) / sizeof(float) + 3 })
            for (int round = 0; round < 2; round++)
            {
                Assert.Equal(length, HugePageArrays.Uninitialized(length).LongLength);
                var a = HugePageArrays.Zeroed(length);
                Assert.Equal(length, a.LongLength);
                Assert.True(a.AsSpan().IndexOfAnyExcept(0f) < 0);
                Array.Fill(a, 5f); // dirty memory the next round may be given back
                a = null;
                GC.Collect();
            }
    }

    [Fact]
    public void ABatchThatWasNotEndedIsClearedByTheNextStart()
    {
        var sums = new GradientSums(Length, Accumulation.PerBatch);
        sums.StartBatch();
        Array.Fill(sums.Target, 7f); // a batch abandoned before EndBatch
        sums.StartBatch();
        Assert.All(sums.Target, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void TheFirstNonFiniteGradientIsNamedByItsFlatIndex()
    {
        var sums = new GradientSums(Length, Accumulation.PerBatch);
        sums.StartBatch();
        sums.Target[Length - 3] = float.NaN;
        sums.Target[(1 << 16) + 5] = float.PositiveInfinity;
        var e = Assert.Throws<CwaException>(() => sums.EndBatch(1, 4, "model.layers.0.mlp.up_proj.weight"));
        Assert.Equal($"calibration batch 4: gradient of model.layers.0.mlp.up_proj.weight not finite at flat index {(1 << 16) + 5}; check the model weights and data", e.Message);
    }

    [Fact]
    public void APartOfABatchGoesToItsFlatIndices()
    {
        var sums = new GradientSums(Length, Accumulation.PerBatch);
        var g = Values(5, 2 * (1 << 16) + 9);
        sums.AddBatch(1000, g, 7, g.Length - 7, 2.0, 0, "lm_head.weight");
        for (int i = 0; i < Length; i++)
        {
            float expected = i >= 1000 && i < 1000 + g.Length - 7 ? g[i - 1000 + 7] : 0f;
            Assert.Equal(expected * 2f, sums.Total[i]);
            Assert.Equal(expected * expected, sums.Squares![i]);
        }
        g[(1 << 16) + 100] = float.NaN;
        var e = Assert.Throws<CwaException>(() => sums.AddBatch(1000, g, 7, g.Length - 7, 2.0, 3, "lm_head.weight"));
        Assert.Contains($"gradient of lm_head.weight not finite at flat index {1000 + (1 << 16) + 93};", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void KeptSlotsRoundTripInMemoryAndInAScratchFileThatIsRemoved(bool inFile)
    {
        using var dir = new TempDir();
        string? path = inFile ? dir.File("kept.scratch") : null;
        int[] rows = [3, 5];
        const int perRow = 7, layers = 2;
        using (var kept = new KeptActivations(rows, perRow, layers, path))
        {
            for (int l = 0; l < layers; l++)
                for (int b = 0; b < rows.Length; b++)
                    kept.Slot(l, b).Write(0, Values((ulong)(10 * l + b), rows[b] * perRow));
            kept.Prefetch(1);
            for (int l = layers - 1; l >= 0; l--)
                for (int b = 0; b < rows.Length; b++)
                {
                    var back = new float[rows[b] * perRow - 2];
                    kept.Slot(l, b).Read(2, back);
                    Assert.Equal(Values((ulong)(10 * l + b), rows[b] * perRow)[2..], back);
                }
            Assert.Throws<ArgumentOutOfRangeException>(() => kept.Slot(0, 0).Read(1, new float[rows[0] * perRow]));
            Assert.Equal(inFile, File.Exists(dir.File("kept.scratch")));
        }
        Assert.False(File.Exists(dir.File("kept.scratch")));
    }

    [Fact]
    public void AKeptSlotLeavesThePageCacheOnceItIsRead()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var dir = new TempDir();
        int[] rows = [64, 37];
        const int perRow = 1000, layers = 2;
        using var kept = new KeptActivations(rows, perRow, layers, dir.File("kept.scratch"));
        for (int l = 0; l < layers; l++)
            for (int b = 0; b < rows.Length; b++)
                kept.Slot(l, b).Write(0, Values((ulong)(10 * l + b), rows[b] * perRow));
        kept.Flush();
        using var handle = File.OpenHandle(kept.Path!, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        int fd = (int)handle.DangerousGetHandle();
        long length = RandomAccess.GetLength(handle);
        void ReadAll() => RandomAccess.Read(handle, new byte[length], 0);
        // A file system that keeps pages it was told to drop (tmpfs) cannot show the difference.
        ReadAll();
        PageCacheProbe.Drop(fd);
        if (PageCacheProbe.Resident(fd, length).Any(r => r)) return;

        ReadAll();
        Assert.All(PageCacheProbe.Resident(fd, length), Assert.True);
        for (int l = layers - 1; l >= 0; l--)
            for (int b = 0; b < rows.Length; b++)
            {
                var values = new float[rows[b] * perRow];
                kept.Slot(l, b).Read(0, values);
                Assert.Equal(Values((ulong)(10 * l + b), rows[b] * perRow), values);
            }
        // Only pages a slot shares with its neighbour (or the file's padded end) may stay.
        int left = PageCacheProbe.Resident(fd, length).Count(r => r);
        Assert.True(left <= 2 * layers * rows.Length, $"{left} of {(length + PageCacheProbe.Page - 1) / PageCacheProbe.Page} pages still cached after every slot was read");
    }

    [Fact]
    public void AScratchFileThatCannotBeCreatedIsAClearError()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.File("missing"), "kept.scratch");
        var e = Assert.Throws<CwaException>(() => new KeptActivations([2], 3, 1, path));
        Assert.StartsWith($"{path}: cannot create the scratch file for kept activations", e.Message);
    }

    [Fact]
    public void ThePageWarmerReadsRangesInTheBackgroundAndIgnoresFilesItCannotRead()
    {
        using var dir = new TempDir();
        string file = dir.File("weights.bin");
        File.WriteAllBytes(file, new byte[(9 << 20) + 5]);
        using var warmer = new PageWarmer();
        warmer.Warm(dir.File("gone.bin"), 0, 100);
        warmer.Warm(file, 4096, (9 << 20) - 4091); // more than one read, up to the end
        warmer.Warm(file, 0, 1L << 40);            // past the end: stops at the end
        warmer.Drain();
    }

    [Fact]
    public void TheBackgroundWriterPutsEveryByteWhereItWasAskedThroughStagingSmallerThanTheData()
    {
        using var dir = new TempDir();
        string file = dir.File("scratch.bin");
        var expected = new byte[300_000];
        new Random(3).NextBytes(expected);
        using (var handle = File.OpenHandle(file, FileMode.CreateNew, FileAccess.ReadWrite))
        using (var writer = new BackgroundFileWriter(handle, 8192))
        {
            Assert.Equal(8192, writer.StagingBytes);
            // Pieces out of order and of odd sizes, each larger or smaller than a chunk.
            int[] cuts = [0, 12_345, 13_000, 100_001, 100_002, 250_000, 300_000];
            foreach (int i in new[] { 4, 0, 2, 5, 1, 3 })
                writer.Write(expected.AsSpan(cuts[i], cuts[i + 1] - cuts[i]), cuts[i]);
            writer.Flush();
            AssertFile(handle, expected);
            writer.Flush(); // nothing queued: returns at once
        }
    }

    [Fact]
    public void ASequentialStreamGoesPastThePageCacheInWholeBlocksAndAnyOtherWriteEndsIt()
    {
        using var dir = new TempDir();
        string file = dir.File("scratch.bin");
        var expected = new byte[70_000];
        new Random(5).NextBytes(expected);
        using var handle = File.OpenHandle(file, FileMode.CreateNew, FileAccess.ReadWrite);
        using var direct = DirectIo.TryOpenForWrite(file);
        if (direct == null) return; // this file system has no direct I/O: the ordinary path is tested above
        using var writer = new BackgroundFileWriter(handle, 12_000, direct);
        Assert.Equal(2 * 8192, writer.StagingBytes); // chunks are whole blocks (8192 here), at least 2 of them
        // Odd-sized pieces in order; a flush in the middle writes a padded partial block that later data rewrites.
        int[] cuts = [0, 1, 5000, 8192, 20_001, 33_333, 50_000];
        for (int i = 0; i + 1 < cuts.Length; i++)
        {
            writer.Write(expected.AsSpan(cuts[i], cuts[i + 1] - cuts[i]), cuts[i]);
            if (i == 3) { writer.Flush(); AssertFile(handle, expected.AsSpan(0, cuts[i + 1])); }
        }
        writer.Flush();
        Assert.True(writer.WritesDirect);
        AssertFile(handle, expected.AsSpan(0, 50_000));
        // A write elsewhere (here: back over earlier data) ends the stream; what follows goes through the page cache.
        new Random(6).NextBytes(expected.AsSpan(100, 900));
        writer.Write(expected.AsSpan(100, 900), 100);
        writer.Write(expected.AsSpan(50_000, 20_000), 50_000);
        writer.Flush();
        Assert.False(writer.WritesDirect);
        AssertFile(handle, expected);
    }

    [Fact]
    public void ADirectHandleThatRefusesWritesLeavesThemToTheOrdinaryOne()
    {
        using var dir = new TempDir();
        string file = dir.File("scratch.bin");
        var expected = new byte[40_000];
        new Random(7).NextBytes(expected);
        using var handle = File.OpenHandle(file, FileMode.CreateNew, FileAccess.ReadWrite);
        using var readOnly = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var writer = new BackgroundFileWriter(handle, 8192, readOnly);
        writer.Write(expected.AsSpan(0, 30_000), 0);
        writer.Write(expected.AsSpan(30_000), 30_000);
        writer.Flush();
        Assert.False(writer.WritesDirect);
        AssertFile(handle, expected);
    }

    private static void AssertFile(Microsoft.Win32.SafeHandles.SafeFileHandle handle, ReadOnlySpan<byte> expected)
    {
        var back = new byte[expected.Length];
        Assert.Equal(back.Length, RandomAccess.Read(handle, back, 0));
        Assert.True(expected.SequenceEqual(back));
    }

    [Fact]
    public void AFailedBackgroundWriteIsReportedByTheNextFlushAndEveryWriteAfterIt()
    {
        if (!File.Exists("/dev/full")) return; // Linux's always-full device stands in for a full disk
        using var handle = File.OpenHandle("/dev/full", FileMode.Open, FileAccess.Write);
        using var writer = new BackgroundFileWriter(handle, 4096);
        writer.Write(new byte[10_000], 0);
        var e = Assert.Throws<IOException>(writer.Flush);
        Assert.Contains("space", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Throws<IOException>(() => writer.Write(new byte[10], 0));
    }

    [Fact]
    public void KeptSlotsInAScratchFileCountTheSecondsTheirWritesAndReadsTake()
    {
        using var dir = new TempDir();
        int[] rows = [40, 33];
        const int perRow = 300, layers = 3;
        using var kept = new KeptActivations(rows, perRow, layers, dir.File("kept.scratch"));
        for (int l = 0; l < layers; l++)
            for (int b = 0; b < rows.Length; b++)
                kept.Slot(l, b).Write(0, Values((ulong)(100 + 10 * l + b), rows[b] * perRow));
        // No Flush first: a read waits for the writes queued before it (the 48 KB of staging holds one slot).
        var back = new float[rows[1] * perRow];
        kept.Slot(layers - 1, 1).Read(0, back);
        Assert.Equal(Values((ulong)(100 + 10 * (layers - 1) + 1), rows[1] * perRow), back);
        Assert.True(kept.WriteSeconds > 0 && kept.ReadSeconds > 0);
        // The slots are written in order, one stream: past the page cache wherever the file system offers it.
        using (var probe = DirectIo.TryOpenForWrite(kept.Path!)) Assert.Equal(probe != null, kept.WritesDirect);
        // Every slot reads back, also those written before the last partial block's padded flush.
        for (int l = 0; l < layers; l++)
            for (int b = 0; b < rows.Length; b++)
            {
                var values = new float[rows[b] * perRow];
                kept.Slot(l, b).Read(0, values);
                Assert.Equal(Values((ulong)(100 + 10 * l + b), rows[b] * perRow), values);
            }
    }
}
