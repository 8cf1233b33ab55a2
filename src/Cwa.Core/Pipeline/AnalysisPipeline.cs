namespace Cwa.Core.Pipeline;

/// <summary>Orchestrates an analyze run (being assembled from the per-folder components).</summary>
public static class AnalysisPipeline
{
    public static AnalysisSummary Run(AnalyzeRequest request, IProgressSink progress) =>
        throw new CwaException("analyze is not assembled yet");
}
