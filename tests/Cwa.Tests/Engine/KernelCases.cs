using Cwa.Core.Engine;

namespace Cwa.Tests.Engine;

/// <summary>
/// Theory rows for every SGEMM micro-kernel this machine can run (by name: the enum is internal). A CI machine with
/// AVX-512 runs all of them, so the kernels of AVX2 and ARM64 machines are tested there too.
/// </summary>
internal static class KernelCases
{
    public static TheoryData<string> Names()
    {
        var rows = new TheoryData<string>();
        foreach (var k in MicroKernels.Supported) rows.Add(k.ToString());
        return rows;
    }

    /// <summary>Each row of <paramref name="rows"/> once per kernel, the kernel's name first.</summary>
    public static TheoryData<string, int, int, int> Each(TheoryData<int, int, int> rows)
    {
        var all = new TheoryData<string, int, int, int>();
        foreach (var k in MicroKernels.Supported)
            foreach (var row in rows)
                all.Add(k.ToString(), (int)row[0], (int)row[1], (int)row[2]);
        return all;
    }

    /// <summary>Runs the calling test's products on the named kernel until disposed.</summary>
    public static IDisposable Use(string name) => MicroKernels.Use(Enum.Parse<MicroKernel>(name));
}
