using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>Indices of one block's tensors in the LlamaLayout order (-1 where absent, e.g. biases).</summary>
internal readonly record struct LayerParams(int InNorm, int Q, int K, int V, int QBias, int KBias, int VBias, int O, int PostNorm, int Gate, int Up, int Down)
{
    public static LayerParams[] Resolve(IReadOnlyList<ParameterSpec> specs, int layers)
    {
        var result = new LayerParams[layers];
        for (int l = 0; l < layers; l++)
        {
            int Find(ParameterRole role)
            {
                for (int i = 0; i < specs.Count; i++)
                    if (specs[i].Block == l && specs[i].Role == role) return i;
                return -1;
            }
            result[l] = new LayerParams(Find(ParameterRole.InputNorm), Find(ParameterRole.QProj), Find(ParameterRole.KProj), Find(ParameterRole.VProj),
                Find(ParameterRole.QBias), Find(ParameterRole.KBias), Find(ParameterRole.VBias), Find(ParameterRole.OProj),
                Find(ParameterRole.PostAttentionNorm), Find(ParameterRole.GateProj), Find(ParameterRole.UpProj), Find(ParameterRole.DownProj));
        }
        return result;
    }
}
