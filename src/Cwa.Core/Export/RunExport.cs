using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Cwa.Core.Reporting;

namespace Cwa.Core.Export;

/// <summary>
/// `cwa export`: a finished run turned into what quantisers read. mask: the critical weights' coordinates and original
/// values per tensor (safetensors) for dense-and-sparse quantisers; llama-cpp: a --tensor-type-file for llama-quantize;
/// gptqmodel: the `dynamic` per-module overrides; llm-compressor: a recipe whose `ignore` list keeps the chosen modules
/// unquantised. The three tensor-level formats keep the tensors of the ExportPlan.
/// </summary>
public static class RunExport
{
    public static readonly string[] Formats = ["mask", "llama-cpp", "gptqmodel", "llm-compressor"];

    /// <summary>The tensors a format can name: GGUF-mapped ones for llama.cpp, the blocks' modules for GPTQModel and llm-compressor.</summary>
    public static Func<string, bool> Candidates(string format) => format == "llama-cpp"
        ? t => GgufNames.Of(t) != null
        : t => t.StartsWith("model.layers.", StringComparison.Ordinal);

    public static string DefaultFile(string format) => format switch
    {
        "mask" => "critical_weights_mask.safetensors",
        "llama-cpp" => "llama_quantize_tensor_types.txt",
        "gptqmodel" => "gptqmodel_dynamic.json",
        _ => "llm_compressor_recipe.yaml",
    };

    /// <summary>Per tensor two entries: "{tensor}.indices" I64 [k, 2] (row, col of the [out, in] weight) and "{tensor}.values" F32 [k].</summary>
    public static int Mask(string runDir, string outPath)
    {
        string csv = Path.Combine(runDir, "top_weights.csv");
        if (!File.Exists(csv)) throw new InputException($"{runDir}: not a cwa run folder (no top_weights.csv)");
        InputFiles.EnsureRegular(csv);
        var rows0 = TopWeightsCsv.Read(csv);
        if (rows0.Any(w => float.IsNaN(w.Weight)))
            throw new InputException($"{csv}: has no weight values (the Python original's 4-column format?); the mask needs the weight column cwa writes");
        var groups = rows0.GroupBy(w => w.Parameter).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "cwa-critical-weights", ["source"] = Path.GetFullPath(runDir) } };
        var data = new MemoryStream();
        void Add(string name, string dtype, long[] shape, byte[] bytes)
        {
            header[name] = new JsonObject { ["dtype"] = dtype, ["shape"] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray()), ["data_offsets"] = new JsonArray(data.Length, data.Length + bytes.Length) };
            data.Write(bytes);
        }
        foreach (var g in groups)
        {
            var rows = g.ToList();
            var idx = new byte[rows.Count * 16];
            var val = new byte[rows.Count * 4];
            for (int i = 0; i < rows.Count; i++)
            {
                BitConverter.TryWriteBytes(idx.AsSpan(i * 16), (long)rows[i].Row);
                BitConverter.TryWriteBytes(idx.AsSpan(i * 16 + 8), (long)rows[i].Col);
                BitConverter.TryWriteBytes(val.AsSpan(i * 4), rows[i].Weight);
            }
            Add(g.Key + ".indices", "I64", [rows.Count, 2], idx);
            Add(g.Key + ".values", "F32", [rows.Count], val);
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(outPath, s =>
        {
            s.Write(BitConverter.GetBytes((ulong)padded));
            s.Write(json);
            for (int i = json.Length; i < padded; i++) s.WriteByte((byte)' ');
            data.Position = 0;
            data.CopyTo(s);
        });
        return groups.Sum(g => g.Count());
    }

    /// <summary>One "regex=type" line per kept tensor, GGUF names (llama-quantize --tensor-type-file).</summary>
    public static string LlamaCpp(ExportPlan plan, string highType)
    {
        if (!Regex.IsMatch(highType, "^[A-Za-z0-9_]+$")) throw new InputException($"--high-type '{highType}' is not a ggml type name (e.g. q8_0, q6_K, f16)");
        var lines = plan.Kept.Select(t => GgufNames.Of(t.Tensor) is { } g ? $"^{Regex.Escape(g)}$={highType}" : null).OfType<string>();
        return string.Join("\n", lines) + "\n";
    }

    /// <summary>GPTQModel's QuantizeConfig.dynamic: "+:" overrides the bits of a kept module, "-:" (16 bits) leaves it unquantised.</summary>
    public static string GptqModel(ExportPlan plan, int highBits)
    {
        if (highBits is not (2 or 3 or 4 or 8 or 16)) throw new InputException($"--high-bits must be 2, 3, 4, 8 or 16 (got {highBits})");
        var dynamic = new JsonObject();
        foreach (var t in plan.Kept.Where(t => t.Tensor.StartsWith("model.layers.", StringComparison.Ordinal)))
        {
            string module = "^" + Regex.Escape(Module(t.Tensor)) + "$";
            dynamic[(highBits == 16 ? "-:" : "+:") + module] = highBits == 16 ? new JsonObject() : new JsonObject { ["bits"] = highBits };
        }
        return new JsonObject { ["dynamic"] = dynamic }.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
    }

    /// <summary>An llm-compressor recipe that quantises every Linear layer with the scheme except lm_head and the kept modules.</summary>
    public static string LlmCompressor(ExportPlan plan, string scheme)
    {
        if (!Regex.IsMatch(scheme, "^[A-Za-z0-9_]+$")) throw new InputException($"--scheme '{scheme}' is not a preset scheme name (e.g. W4A16, W8A8)");
        var ignore = new List<string> { "lm_head" };
        ignore.AddRange(plan.Kept.Where(t => t.Tensor.StartsWith("model.layers.", StringComparison.Ordinal)).Select(t => Module(t.Tensor)));
        var sb = new StringBuilder();
        sb.Append("# written by cwa export: keeps the ").Append(plan.Kept.Count).Append(" most sensitive modules unquantised (")
          .Append(plan.KeptScoreShare.ToString("P1", CultureInfo.InvariantCulture)).Append(" of the score in ")
          .Append(plan.KeptWeightShare.ToString("P1", CultureInfo.InvariantCulture)).Append(" of the weights)\n");
        sb.Append("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: [\"Linear\"]\n      scheme: \"").Append(scheme).Append("\"\n      ignore:\n");
        foreach (var m in ignore.Distinct()) sb.Append("        - \"").Append(m).Append("\"\n");
        return sb.ToString();
    }

    private static string Module(string tensor) => tensor.EndsWith(".weight", StringComparison.Ordinal) ? tensor[..^".weight".Length] : tensor;
}
