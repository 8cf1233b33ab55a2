using Cwa.Cuda.Gemm;
using ILGPU;

namespace Cwa.Cuda.Engine;

/// <summary>
/// Grouped-query causal attention on the device, the CPU's Attention as batched fp32 GEMMs over (sequence, head)
/// plus row-softmax kernels. Scores are computed for all S x S positions; the softmax zeroes everything outside
/// the causal mask and every padding row, so padding contributes exact zeros, as on the CPU where it is skipped.
/// Problems that accumulate into the same dK/dV slice (heads of one kv group) go in separate calls, in head
/// order, so no two writers race and the sum order is fixed.
/// </summary>
internal sealed class DeviceAttention(IDeviceGemm gemm, DeviceOps ops, int heads, int kvHeads, int headDim)
{
    private readonly float _scale = 1f / MathF.Sqrt(headDim);
    private int Group => heads / kvHeads;

    /// <summary>probs [B, H, S, S] kept for backward; output [N, H*hd].</summary>
    public void Forward(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> probs, ArrayView<float> output, ArrayView<int> lengths, int batch, int seqLen)
    {
        int qs = heads * headDim, ks = kvHeads * headDim;
        var (qOff, kOff, pOff) = Offsets(batch, seqLen, -1);
        gemm.GemmBatched(false, true, seqLen, seqLen, headDim, _scale, q, qOff, qs, k, kOff, ks, 0f, probs, pOff, seqLen);
        ops.CausalSoftmax(probs, lengths, batch, heads, seqLen);
        gemm.GemmBatched(false, false, seqLen, headDim, seqLen, 1f, probs, pOff, seqLen, v, kOff, ks, 0f, output, qOff, qs);
    }

    /// <summary>Writes dq, dk and dv (overwriting) from dOut; dp [B, H, S, S] is scratch.</summary>
    public void Backward(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> probs, ArrayView<float> dOut,
        ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv, ArrayView<float> dp, ArrayView<int> lengths, int batch, int seqLen)
    {
        int qs = heads * headDim, ks = kvHeads * headDim;
        var (qOff, kOff, pOff) = Offsets(batch, seqLen, -1);
        // dP = dO V^T
        gemm.GemmBatched(false, true, seqLen, seqLen, headDim, 1f, dOut, qOff, qs, v, kOff, ks, 0f, dp, pOff, seqLen);
        // dV = sum over the group's heads of P^T dO
        for (int g = 0; g < Group; g++)
        {
            var (gq, gk, gp) = Offsets(batch, seqLen, g);
            gemm.GemmBatched(true, false, seqLen, headDim, seqLen, 1f, probs, gp, seqLen, dOut, gq, qs, g == 0 ? 0f : 1f, dv, gk, ks);
        }
        ops.SoftmaxBackward(probs, dp, lengths, batch, heads, seqLen);
        // dQ = c dS K;  dK = sum over the group's heads of c dS^T Q
        gemm.GemmBatched(false, false, seqLen, headDim, seqLen, _scale, dp, pOff, seqLen, k, kOff, ks, 0f, dq, qOff, qs);
        for (int g = 0; g < Group; g++)
        {
            var (gq, gk, gp) = Offsets(batch, seqLen, g);
            gemm.GemmBatched(true, false, seqLen, headDim, seqLen, _scale, dp, gp, seqLen, q, gq, qs, g == 0 ? 0f : 1f, dk, gk, ks);
        }
    }

    /// <summary>
    /// Element offsets of the q-head, kv-head and probability blocks of every (sequence, head) problem; with
    /// groupMember >= 0 only the heads h = kvh * group + groupMember, one per (sequence, kv head).
    /// </summary>
    private (long[] Q, long[] K, long[] P) Offsets(int batch, int seqLen, int groupMember)
    {
        int qs = heads * headDim, ks = kvHeads * headDim;
        var q = new List<long>();
        var k = new List<long>();
        var p = new List<long>();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                if (groupMember >= 0 && h % Group != groupMember) continue;
                int kvh = h / Group;
                q.Add((long)b * seqLen * qs + h * headDim);
                k.Add((long)b * seqLen * ks + kvh * headDim);
                p.Add(((long)b * heads + h) * seqLen * seqLen);
            }
        return (q.ToArray(), k.ToArray(), p.ToArray());
    }
}
