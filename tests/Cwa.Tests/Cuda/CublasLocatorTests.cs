using Cwa.Core;
using Cwa.Cuda;

namespace Cwa.Tests.Cuda;

public class CublasLocatorTests
{
    [Fact]
    public void MissingCublasIsAOneLineErrorListingWhereItLooked()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<InputException>(() => CublasLocator.Load(dir.Path, includeSystem: false));
        Assert.Contains($"looked in: {dir.Path}", e.Message);
        Assert.Contains("--cuda-lib-dir", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AFileThatIsNotALibraryIsReportedAsUnloadable()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("libcublas.so.12"), "not an ELF file");
        var e = Assert.Throws<InputException>(() => CublasLocator.Load(dir.Path, includeSystem: false));
        Assert.Contains($"failed to load: {dir.File("libcublas.so.12")}", e.Message);
    }

    [Fact]
    public void SearchIncludesTheUsualGpuBoxLocations()
    {
        var dirs = CublasLocator.CandidateDirectories("/my/cuda");
        Assert.Equal("/my/cuda", dirs[0]);
        Assert.Contains("/usr/local/cuda/lib64", dirs);
    }
}
