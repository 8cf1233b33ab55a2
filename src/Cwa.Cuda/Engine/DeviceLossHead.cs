using Cwa.Core.Data;
using Cwa.Cuda.Gemm;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda.Engine;

/// <summary>
/// lm_head + next-token cross-entropy on the device, over target rows only and in row chunks (as LossHead on the
/// CPU): logits = x W^T, fused softmax cross-entropy, and when gradients are wanted dW_head += dlogits^T x and
/// dx = dlogits W. Only the per-row NLL and arg-max hits come back to the host.
/// </summary>
internal sealed class DeviceLossHead(IDeviceGemm gemm, DeviceOps ops)
{
    public readonly record struct Result(double SumNll, long Targets, long Correct);

    /// <param name="x">normed hidden states [N, D] on the device</param>
    /// <param name="dx">if not default, receives d(loss*scale)/dx for every row (zeros for non-target rows)</param>
    public Result Run(Batch batch, DeviceWorkspace ws, ArrayView<float> x, int dim, DeviceTensor head, int vocab, ArrayView<float> dHead, ArrayView<float> dx, double scale)
    {
        var (rows, targets) = batch.TargetPositions();
        bool grad = dx.IsValid;
        int n = rows.Length;
        if (grad) dx.SubView(0, (long)batch.BatchSize * batch.SeqLen * dim).MemSetToZero();
        if (n == 0) return new Result(0, 0, 0);
        ws.Rows.SubView(0, n).CopyFromCPU(rows);
        ws.Targets.SubView(0, n).CopyFromCPU(targets);
        var format = head.Format;
        var w = head.At(0, dim);
        float s = (float)(scale / n);
        var nll = new float[ws.ChunkRows];
        var hit = new int[ws.ChunkRows];
        double sum = 0;
        long correct = 0;
        for (int c0 = 0; c0 < n; c0 += ws.ChunkRows)
        {
            int cn = Math.Min(ws.ChunkRows, n - c0);
            ops.GatherRows(ws.Rows.SubView(c0, cn), x, ws.Xs, cn, dim);
            var xs = ops.Staged(ws.Xs, (long)cn * dim, dim, ws.StageB, format);
            gemm.Gemm(false, true, cn, vocab, dim, 1f, xs, w, 0f, ws.Logits, 0, vocab);
            ops.CrossEntropy(ws.Logits, ws.Targets.SubView(c0, cn), ws.Nll, ws.Hit, cn, vocab, s, grad);
            ws.Nll.SubView(0, cn).CopyToCPU(nll.AsSpan(0, cn));
            ws.Hit.SubView(0, cn).CopyToCPU(hit.AsSpan(0, cn));
            for (int i = 0; i < cn; i++)
            {
                sum += nll[i];
                correct += hit[i];
            }
            if (!grad) continue;
            var dlogits = ops.Staged(ws.Logits, (long)cn * vocab, vocab, ws.StageLogits, format);
            gemm.Gemm(true, false, vocab, dim, cn, 1f, dlogits, xs, 1f, dHead, 0, dim);
            gemm.Gemm(false, false, cn, dim, vocab, 1f, dlogits, w, 0f, ws.Dxs, 0, dim);
            ops.ScatterRows(ws.Rows.SubView(c0, cn), ws.Dxs, dx, cn, dim);
        }
        return new Result(sum, n, correct);
    }
}
