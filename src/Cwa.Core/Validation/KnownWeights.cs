using System.Reflection;
using System.Text.Json.Nodes;
using Cwa.Core.Models;
using Cwa.Core.Perturbation;

namespace Cwa.Core.Validation;

/// <summary>Weights known (published, or planted) to be critical, matched to this model; Note says why there are none.</summary>
public sealed record KnownWeightSet(string Origin, IReadOnlyList<ResolvedTarget> Weights, string? Note);

/// <summary>
/// --known-weights: a targets file (CSV or JSON: tensor,row,col[,label,source], see WeightTargets), or "builtin", the
/// shipped list of published super weights, of which the entries for a model with this one's shape (hidden size,
/// layers, intermediate size, vocabulary) apply. Matching is by shape only: a fine-tune of a listed model matches too.
/// </summary>
public static class KnownWeights
{
    public const string BuiltIn = "builtin";
    private const string ResourceName = "Cwa.Core.Data.Resources.known_super_weights.json";

    public static KnownWeightSet Load(string spec, ModelConfig config, IReadOnlyList<ParameterSpec> specs)
    {
        if (spec != BuiltIn)
            return new KnownWeightSet(Path.GetFullPath(spec), WeightTargets.Resolve(WeightTargets.Read(spec), specs), null);
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourceName)!;
        var root = JsonNode.Parse(stream)!.AsObject();
        string source = root["source"]!.GetValue<string>();
        var matches = root["models"]!.AsArray().Select(m => m!.AsObject()).Where(m =>
            m["hidden_size"]!.GetValue<int>() == config.HiddenSize && m["num_layers"]!.GetValue<int>() == config.NumLayers &&
            m["intermediate_size"]!.GetValue<int>() == config.IntermediateSize && m["vocab_size"]!.GetValue<int>() == config.VocabSize).ToList();
        if (matches.Count == 0)
            return new KnownWeightSet(BuiltIn, [], $"no published super weights for this model's shape (hidden {config.HiddenSize}, {config.NumLayers} layers, " +
                $"intermediate {config.IntermediateSize}, vocabulary {config.VocabSize}); the built-in list covers {string.Join(", ", root["models"]!.AsArray().Select(m => m!["name"]!.GetValue<string>()))}");
        var targets = matches.SelectMany(m => m["weights"]!.AsArray().Select(w => new WeightTarget(w!["tensor"]!.GetValue<string>(), w["row"]!.GetValue<long>(),
            w["col"]!.GetValue<long>(), w["label"]!.GetValue<string>(), $"{source}; {m["name"]!.GetValue<string>()} coordinates from {m["source"]?.GetValue<string>() ?? "the paper"}",
            $"built-in known weights ({m["name"]})"))).ToList();
        return new KnownWeightSet($"{BuiltIn}: {string.Join(", ", matches.Select(m => m["name"]!.GetValue<string>()))}", WeightTargets.Resolve(targets, specs), null);
    }

    /// <summary>The weights to probe while scoring, per tensor index.</summary>
    public static IReadOnlyDictionary<int, long[]> Probes(KnownWeightSet set) =>
        set.Weights.GroupBy(w => w.TensorIndex).ToDictionary(g => g.Key, g => g.Select(w => w.FlatIndex).Distinct().ToArray());
}
