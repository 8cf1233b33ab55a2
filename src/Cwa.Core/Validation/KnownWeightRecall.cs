using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Ranking;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Validation;

/// <summary>
/// One known weight against the ranking: its score and rank within its tensor (when scored on the host), and whether
/// each mode's top-k holds it.
/// </summary>
public sealed record KnownWeightResult(string Label, string? Source, string Tensor, long Row, long Col, bool Scored, float? Score, long? RankInTensor,
    long TensorSize, bool InTopKPerLayer, bool InTopKGlobal, bool InTopKPerBlock);

/// <summary>Recall@k of the known weights for every ranking mode: the share of them in that mode's top-k set.</summary>
public sealed record KnownWeightReport(string Origin, int TopK, string? Note, IReadOnlyList<KnownWeightResult> Weights)
{
    public double? RecallPerLayer => Recall(w => w.InTopKPerLayer);
    public double? RecallGlobal => Recall(w => w.InTopKGlobal);
    public double? RecallPerBlock => Recall(w => w.InTopKPerBlock);

    private double? Recall(Func<KnownWeightResult, bool> hit) => Weights.Count == 0 ? null : (double)Weights.Count(hit) / Weights.Count;

    public static KnownWeightReport Of(KnownWeightSet set, RankingResult ranking, IReadOnlyList<ParameterSpec> specs, int k)
    {
        var perLayer = ranking.ScoredTensors.SelectMany(t => ranking.TopPerTensor[t].Take(k)).Select(s => (s.TensorIndex, s.FlatIndex)).ToHashSet();
        var global = ranking.Global.Take(k).Select(s => (s.TensorIndex, s.FlatIndex)).ToHashSet();
        var perBlock = ranking.PerBlock.Values.SelectMany(b => b.Take(k)).Select(s => (s.TensorIndex, s.FlatIndex)).ToHashSet();
        var probed = ranking.Probed.ToDictionary(p => (p.TensorIndex, p.FlatIndex));
        var scored = ranking.ScoredTensors.ToHashSet();
        var results = set.Weights.Select(w =>
        {
            var key = (w.TensorIndex, w.FlatIndex);
            ProbedWeight? p = probed.TryGetValue(key, out var pw) ? pw : null;
            return new KnownWeightResult(w.Name, w.Source, w.Tensor, w.Row, w.Col, scored.Contains(w.TensorIndex), p?.Score, p?.RankInTensor,
                specs[w.TensorIndex].NumElements, perLayer.Contains(key), global.Contains(key), perBlock.Contains(key));
        }).ToList();
        return new KnownWeightReport(set.Origin, k, set.Note, results);
    }
}
