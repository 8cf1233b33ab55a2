using Cwa.Core.Checkpoints;

namespace Cwa.Tests.EndToEnd;

/// <summary>
/// A copy of an untied fp32 model whose lm_head is ±1e38: every weight is finite, so loading accepts it, but the
/// logits overflow and the first calibration batch has a non-finite loss (a failure in the middle of a run).
/// </summary>
internal static class BrokenModel
{
    public static void Write(string source, string target)
    {
        Directory.CreateDirectory(target);
        foreach (var f in Directory.EnumerateFiles(source)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        foreach (var shard in Directory.EnumerateFiles(target, "*.safetensors"))
        {
            List<(string Name, float[] Values)> tensors;
            Dictionary<string, string> meta;
            using (var f = SafeTensorsFile.Open(shard))
            {
                if (!f.Contains("lm_head.weight")) continue;
                meta = f.Metadata.ToDictionary();
                tensors = f.Names.Select(n => { var v = new float[f.Info(n).ElementCount]; f.Read(n, v); return (n, v); }).ToList();
            }
            var head = tensors.Single(t => t.Name == "lm_head.weight").Values;
            for (int i = 0; i < head.Length; i++) head[i] = i % 2 == 0 ? 1e38f : -1e38f;
            using var w = new SafeTensorsWriter(shard, tensors.Select(t => (t.Name, DType.F32, Shape(shard, t.Name))).ToList(), meta);
            foreach (var (n, v) in tensors) w.Write(n, v);
            w.Commit();
        }
    }

    private static long[] Shape(string shard, string name)
    {
        using var f = SafeTensorsFile.Open(shard);
        return f.Shape(name);
    }
}
