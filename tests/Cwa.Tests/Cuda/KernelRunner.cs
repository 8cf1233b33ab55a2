using Cwa.Cuda;
using Cwa.Cuda.Engine;
using Cwa.Cuda.Gemm;
using ILGPU;
using ILGPU.Runtime;

namespace Cwa.Tests.Cuda;

/// <summary>Runs single device kernels on host arrays (copy in, launch, copy out) for the kernel tests.</summary>
internal sealed class KernelRunner(DeviceContext device) : IDisposable
{
    private readonly Accelerator _acc = device.Accelerator;
    private readonly List<MemoryBuffer> _buffers = [];
    public DeviceOps Ops { get; } = new(device.Accelerator);
    public FallbackGemm FallbackGemm { get; } = new(device.Accelerator);

    public ArrayView<T> Up<T>(T[] data) where T : unmanaged
    {
        var b = _acc.Allocate1D(data.Length == 0 ? new T[1] : data);
        _buffers.Add(b);
        return b.View;
    }

    public static T[] Down<T>(ArrayView<T> view, int count) where T : unmanaged
    {
        var host = new T[count];
        view.SubView(0, count).CopyToCPU(host.AsSpan());
        return host;
    }

    public void SwiGluForward(float[] gate, float[] up, float[] h)
    {
        var o = Up(new float[h.Length]);
        Ops.SwiGluForward(Up(gate), Up(up), o, h.Length);
        Down(o, h.Length).CopyTo(h, 0);
    }

    public void SwiGluBackward(float[] gate, float[] up, float[] dh, float[] dGate, float[] dUp)
    {
        var dg = Up(new float[dh.Length]);
        var du = Up(new float[dh.Length]);
        Ops.SwiGluBackward(Up(gate), Up(up), Up(dh), dg, du, dh.Length);
        Down(dg, dh.Length).CopyTo(dGate, 0);
        Down(du, dh.Length).CopyTo(dUp, 0);
    }

    public void RmsNormForward(float[] x, float[] w, float[] y, float[] rinv, int rows, int dim, float eps)
    {
        var yd = Up(new float[y.Length]);
        var rd = Up(new float[rows]);
        Ops.RmsNormForward(Up(x), Up(w), yd, rd, rows, dim, eps);
        Down(yd, y.Length).CopyTo(y, 0);
        Down(rd, rows).CopyTo(rinv, 0);
    }

    /// <summary>dx += RMSNorm input gradient; dw += weight gradient.</summary>
    public void RmsNormBackward(float[] x, float[] w, float[] rinv, float[] dy, float[] dx, float[] dw, int rows, int dim)
    {
        var dxd = Up(dx);
        var dwd = Up(dw);
        Ops.RmsNormBackward(Up(x), Up(w), Up(rinv), Up(dy), dxd, dwd, rows, dim);
        Down(dxd, dx.Length).CopyTo(dx, 0);
        Down(dwd, dw.Length).CopyTo(dw, 0);
    }

    public void Rope(float[] x, float[] cos, float[] sin, int rows, int seqLen, int heads, int half, bool inverse)
    {
        var xd = Up(x);
        Ops.Rope(xd, Up(cos), Up(sin), rows, seqLen, heads, half, inverse);
        Down(xd, x.Length).CopyTo(x, 0);
    }

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        var cd = Up(c);
        FallbackGemm.Gemm(transA, transB, m, n, k, alpha, Operand.Float(Up(a), 0, lda), Operand.Float(Up(b), 0, ldb), beta, cd, 0, ldc);
        Down(cd, c.Length).CopyTo(c, 0);
    }

    public (float[] Nll, int[] Hit) CrossEntropy(float[] logits, int[] targets, int vocab, float scale, bool grad)
    {
        var l = Up(logits);
        var nll = Up(new float[targets.Length]);
        var hit = Up(new int[targets.Length]);
        Ops.CrossEntropy(l, Up(targets), nll, hit, targets.Length, vocab, scale, grad);
        Down(l, logits.Length).CopyTo(logits, 0);
        return (Down(nll, targets.Length), Down(hit, targets.Length));
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        FallbackGemm.Dispose();
        Ops.Dispose();
    }
}
