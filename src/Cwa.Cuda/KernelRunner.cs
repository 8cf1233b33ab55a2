using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Cuda;

/// <summary>
/// Loads the kernels once per accelerator and runs them on host arrays (copy in, launch, copy out). The CUDA
/// backend will keep its buffers resident on the device; this host-array form is what the kernel tests use.
/// </summary>
public sealed class KernelRunner(DeviceContext device)
{
    private readonly Accelerator _acc = device.Accelerator;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> _swigluFwd =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Kernels.SwiGluForward);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _swigluBwd =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Kernels.SwiGluBackward);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rms =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(Kernels.RmsNormForward);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int> _rope =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(Kernels.Rope);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float> _ce =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float>(Kernels.SoftmaxCrossEntropy);

    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernel.Shape> _gemm =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernel.Shape>(GemmKernel.Compute);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _rmsBwd =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Kernels.RmsNormBackward);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _rmsDw =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(Kernels.RmsNormWeightGrad);
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, float> _attn =
        device.Accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, float>(Kernels.AttentionForward);

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        using var ad = _acc.Allocate1D(a);
        using var bd = _acc.Allocate1D(b);
        using var cd = _acc.Allocate1D(c);
        _gemm(m * n, ad.View, bd.View, cd.View, new GemmKernel.Shape(m, n, k, transA ? 1 : 0, transB ? 1 : 0, lda, ldb, ldc, alpha, beta));
        cd.CopyToCPU(c);
    }

    /// <summary>dx += RMSNorm input gradient; dw += weight gradient.</summary>
    public void RmsNormBackward(float[] x, float[] w, float[] rinv, float[] dy, float[] dx, float[] dw, int rows, int dim)
    {
        using var xd = _acc.Allocate1D(x);
        using var wd = _acc.Allocate1D(w);
        using var rd = _acc.Allocate1D(rinv);
        using var yd = _acc.Allocate1D(dy);
        using var dxd = _acc.Allocate1D(dx);
        using var dwd = _acc.Allocate1D(dw);
        _rmsBwd(rows, xd.View, wd.View, rd.View, yd.View, dxd.View, dim);
        _rmsDw(dim, xd.View, rd.View, yd.View, dwd.View, rows, dim);
        dxd.CopyToCPU(dx);
        dwd.CopyToCPU(dw);
    }

    public void AttentionForward(float[] q, float[] k, float[] v, float[] output, int[] lengths, int seqLen, int heads, int kvHeads, int hd)
    {
        using var qd = _acc.Allocate1D(q);
        using var kd = _acc.Allocate1D(k);
        using var vd = _acc.Allocate1D(v);
        using var od = _acc.Allocate1D<float>(output.Length);
        using var ld = _acc.Allocate1D(lengths);
        _attn(lengths.Length * heads * seqLen, qd.View, kd.View, vd.View, od.View, ld.View, seqLen, heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        od.CopyToCPU(output);
    }

    public void SwiGluForward(float[] gate, float[] up, float[] h)
    {
        using var g = _acc.Allocate1D(gate);
        using var u = _acc.Allocate1D(up);
        using var o = _acc.Allocate1D<float>(h.Length);
        _swigluFwd(h.Length, g.View, u.View, o.View);
        o.CopyToCPU(h);
    }

    public void SwiGluBackward(float[] gate, float[] up, float[] dh, float[] dGate, float[] dUp)
    {
        using var g = _acc.Allocate1D(gate);
        using var u = _acc.Allocate1D(up);
        using var d = _acc.Allocate1D(dh);
        using var dg = _acc.Allocate1D<float>(dh.Length);
        using var du = _acc.Allocate1D<float>(dh.Length);
        _swigluBwd(dh.Length, g.View, u.View, d.View, dg.View, du.View);
        dg.CopyToCPU(dGate);
        du.CopyToCPU(dUp);
    }

    public void RmsNormForward(float[] x, float[] w, float[] y, float[] rinv, int rows, int dim, float eps)
    {
        using var xd = _acc.Allocate1D(x);
        using var wd = _acc.Allocate1D(w);
        using var yd = _acc.Allocate1D<float>(y.Length);
        using var rd = _acc.Allocate1D<float>(rows);
        _rms(rows, xd.View, wd.View, yd.View, rd.View, dim, eps);
        yd.CopyToCPU(y);
        rd.CopyToCPU(rinv);
    }

    public void Rope(float[] x, float[] cos, float[] sin, int rows, int seqLen, int heads, int half, bool inverse)
    {
        using var xd = _acc.Allocate1D(x);
        using var c = _acc.Allocate1D(cos);
        using var s = _acc.Allocate1D(sin);
        _rope(rows * heads * half, xd.View, c.View, s.View, seqLen, heads, half, inverse ? 1 : 0);
        xd.CopyToCPU(x);
    }

    /// <summary>Returns per-row NLL; logits are overwritten with the scaled gradient.</summary>
    public float[] SoftmaxCrossEntropy(float[] logits, int[] targets, int vocab, float scale)
    {
        using var l = _acc.Allocate1D(logits);
        using var t = _acc.Allocate1D(targets);
        using var n = _acc.Allocate1D<float>(targets.Length);
        _ce(targets.Length, l.View, t.View, n.View, vocab, scale);
        l.CopyToCPU(logits);
        var nll = new float[targets.Length];
        n.CopyToCPU(nll);
        return nll;
    }
}
