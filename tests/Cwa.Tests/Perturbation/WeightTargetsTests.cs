using Cwa.Core;
using Cwa.Core.Models;
using Cwa.Core.Perturbation;
using Cwa.Tests.Engine;

namespace Cwa.Tests.Perturbation;

public class WeightTargetsTests
{
    private static readonly IReadOnlyList<ParameterSpec> Specs = LlamaLayout.Parameters(TinyModels.Config()); // hidden 16, ffn 24

    private static IReadOnlyList<ResolvedTarget> ReadAndResolve(string name, string content)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(name), content);
        return WeightTargets.Resolve(WeightTargets.Read(dir.File(name)), Specs);
    }

    private static string Error(string name, string content)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(name), content);
        var e = Assert.Throws<InputException>(() => WeightTargets.Resolve(WeightTargets.Read(dir.File(name)), Specs));
        return e.Message.Replace(dir.Path + "/", "");
    }

    [Fact]
    public void TopWeightsCsvRowsResolveToFlatIndices()
    {
        var t = ReadAndResolve("top_weights.csv",
            "parameter,indices,sensitivity_score,layer_group,rank,block,component,row,col,weight,gradient\n" +
            "model.layers.1.mlp.down_proj.weight,\"(3, 20)\",0.5,mlp,1,1,mlp.down_proj,3,20,0.1,2\n" +
            "model.norm.weight,\"(5, 0)\",0.25,norm,2,-1,norm,5,0,1.0,\n");
        Assert.Equal(2, t.Count);
        Assert.Equal("model.layers.1.mlp.down_proj.weight", t[0].Tensor);
        Assert.Equal(3 * 24 + 20, t[0].FlatIndex);
        Assert.Equal("model.layers.1.mlp.down_proj.weight[3, 20]", t[0].Name);
        Assert.Equal(5, t[1].FlatIndex); // a 1-D tensor's (i, 0)
    }

    [Fact]
    public void KnownWeightsCsvWithShortNamesLayersLabelsAndSources()
    {
        var t = ReadAndResolve("known.csv",
            "tensor,layer,row,col,label,source\n" +
            "mlp.down_proj,1,7,23,super weight,\"Yu et al. 2024, Table 1\"\n" +
            "layers.0.self_attn.o_proj,,2,15,,\n" +
            "model.embed_tokens,,22,0,,\n");
        Assert.Equal("model.layers.1.mlp.down_proj.weight", t[0].Tensor);
        Assert.Equal(7 * 24 + 23, t[0].FlatIndex);
        Assert.Equal("super weight", t[0].Name);
        Assert.Equal("Yu et al. 2024, Table 1", t[0].Source);
        Assert.Equal("model.layers.0.self_attn.o_proj.weight", t[1].Tensor);
        Assert.Null(t[1].Label);
        Assert.Equal(22 * 16, t[2].FlatIndex);
    }

    [Fact]
    public void JsonArraysAndObjectsWithIndicesOrRowAndCol()
    {
        var a = ReadAndResolve("a.json", """[{"tensor": "model.layers.0.mlp.up_proj.weight", "row": 4, "col": 9, "label": "x"}, {"parameter": "layers.1.mlp.gate_proj", "indices": [1, 2]}]""");
        Assert.Equal([4L * 16 + 9, 1L * 16 + 2], a.Select(x => x.FlatIndex));
        var b = ReadAndResolve("b.json", """{"targets": [{"parameter": "model.layers.0.mlp.down_proj.weight", "indices": "(0, 5)"}]}""");
        Assert.Equal(5, b.Single().FlatIndex);
    }

    [Fact]
    public void JointSetsAreSortedPerTensorWithoutDuplicates()
    {
        var t = ReadAndResolve("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,1,1\nlayers.0.mlp.down_proj,0,3\nlayers.0.mlp.down_proj,1,1\nlayers.0.mlp.up_proj,0,0\n");
        var joint = WeightTargets.Joint(t);
        Assert.Equal(2, joint.Count);
        Assert.Equal([3L, 25], joint.Single(j => Specs[j.TensorIndex].Name.Contains("down_proj")).FlatIndices);
    }

    [Theory]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.sideways,1,1\n", "t.csv:2: unknown tensor 'layers.0.mlp.sideways'")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,16,0\n", "t.csv:2: index (16, 0) is outside model.layers.0.mlp.down_proj.weight [16, 24]")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,0,24\n", "t.csv:2: index (0, 24) is outside model.layers.0.mlp.down_proj.weight [16, 24]")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,-1,0\n", "t.csv:2: index (-1, 0) is outside")]
    [InlineData("t.csv", "tensor,row,col\nmodel.norm.weight,3,1\n", "t.csv:2: index (3, 1) is outside model.norm.weight [16]")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,one,0\n", "t.csv:2: row 'one' is not an integer")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,3,\n", "t.csv:2: model.layers.0.mlp.down_proj.weight is 2-D [16, 24]: give a column as well as row 3")]
    [InlineData("t.json", "[{\"tensor\": \"layers.0.mlp.down_proj\", \"row\": 3}]", "t.json: entry 1: model.layers.0.mlp.down_proj.weight is 2-D")]
    [InlineData("t.csv", "parameter,indices\nlayers.0.mlp.down_proj,\"(1, 2, 3)\"\n", "t.csv:2: indices '(1, 2, 3)' is not (row, col)")]
    [InlineData("t.csv", "weight,score\na,1\n", "t.csv: a targets CSV needs a header with 'parameter' (or 'tensor')")]
    [InlineData("t.csv", "tensor,row,col\nlayers.0.mlp.down_proj,1\n", "t.csv:2: expected at least 3 columns, found 2")]
    [InlineData("t.csv", "tensor,row,col,label\nlayers.0.mlp.down_proj,1\n", "t.csv:2: expected at least 3 columns, found 2")]
    [InlineData("t.csv", "tensor,row,col\n", "t.csv: the targets file names no weights")]
    [InlineData("t.csv", "", "t.csv: a targets CSV needs a header")]
    [InlineData("t.json", "[{\"tensor\": \"layers.0.mlp.down_proj\"}]", "t.json: entry 1: no 'row' (or 'indices')")]
    [InlineData("t.json", "[{\"row\": 1}]", "t.json: entry 1: no 'tensor' (or 'parameter')")]
    [InlineData("t.json", "[1, 2]", "t.json: entry 1: expected an object")]
    [InlineData("t.json", "{\"weights\": 3}", "t.json: expected a JSON array of targets")]
    [InlineData("t.json", "[{\"tensor\": ", "t.json: not valid JSON")]
    public void BadTargetsNameTheFileAndLine(string name, string content, string expected)
    {
        Assert.StartsWith(expected, Error(name, content));
    }

    [Fact]
    public void AMissingFileOrAFolderIsAnInputError()
    {
        using var dir = new TempDir();
        Assert.EndsWith("nope.csv: targets file not found", Assert.Throws<InputException>(() => WeightTargets.Read(dir.File("nope.csv"))).Message);
        Assert.EndsWith("is a directory, not a file", Assert.Throws<InputException>(() => WeightTargets.Read(dir.Path)).Message);
    }
}
