#!/usr/bin/env python3
"""Summarises an analyze run for the GPU benchmark: seconds per phase (from the manifest), forward+backward
TFLOP/s and its share of the GPU's dense bf16 peak, peak GPU memory (from an nvidia-smi log in MiB).

Usage: summarize.py OUT_DIR MEMORY_LOG WALL_SECONDS GPU_NAME"""
import json
import os
import sys

out, memlog, wall, gpu = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
manifest = json.load(open(os.path.join(out, "experiment_manifest.json")))
results = manifest["results"]
# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets (SXM parts; PCIe/NVL parts are lower).
peaks = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "B200": 2250.0}
peak = next((v for k, v in peaks.items() if k in gpu), None)
used = [int(l) for l in open(memlog) if l.strip().isdigit()]
tflops = results.get("forward_backward_tflops")
summary = {
    "gpu": gpu,
    "wall_seconds": wall,
    "phases_seconds": manifest["timing"],
    "forward_backward_tflops": tflops,
    "bf16_dense_peak_tflops": peak,
    "share_of_peak": tflops / peak if tflops and peak else None,
    "peak_gpu_memory_mib": max(used) if used else None,
    "calibration_tokens": manifest["data"].get("num_tokens"),
    "results": results,
}
print(json.dumps(summary, indent=2))
