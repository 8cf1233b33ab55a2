using System.Text.Json.Nodes;
using Cwa.Core.Sensitivity;

namespace Cwa.Core.Reporting;

/// <summary>
/// sensitivity_stats.json keeps the Python layout — one top-level key per tensor — so notebooks keep working;
/// the block/component/overall aggregates go to sensitivity_aggregates.json beside it.
/// </summary>
public static class StatsJson
{
    public static void WriteTensors(string path, IEnumerable<TensorStats> stats)
    {
        var root = new JsonObject();
        foreach (var s in stats)
            root[s.Name] = new JsonObject
            {
                ["mean"] = Num(s.Mean), ["std"] = Num(s.Std), ["min"] = Num(s.Min), ["max"] = Num(s.Max),
                ["p95"] = Num(s.P95), ["p99"] = Num(s.P99), ["num_weights"] = s.NumWeights,
                ["p50"] = Num(s.P50), ["p999"] = Num(s.P999), ["num_zeros"] = s.NumZeros,
                ["median"] = Num(s.P50), ["q25"] = Num(s.Q25), ["q75"] = Num(s.Q75), ["skewness"] = Num(s.Skewness),
                ["excess_kurtosis"] = Num(s.ExcessKurtosis), ["zero_share"] = Num(s.ZeroShare), ["sum"] = Num(s.Sum),
            };
        AtomicFile.WriteAllText(path, root.ToJsonString(JsonOutput.Options));
    }

    public static void WriteAggregates(string path, IReadOnlyList<AggregateRow> perBlock, IReadOnlyList<AggregateRow> perComponent, AggregateRow overall) =>
        JsonOutput.Write(path, new { PerBlock = perBlock, PerComponent = perComponent, Overall = overall });

    private static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
}
