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
