#!/usr/bin/env bash
# Issue #7 checks on a GPU host (NVIDIA driver, PyTorch + transformers, no .NET needed):
#   1. reference check against transformers (reference_check.py)
#   2. the Llama-3.1-8B-shaped benchmark: grad_x_weight, per_layer, k=100 on 100 texts of 512 tokens
#   3. `cwa perturb` on the device: the benchmark's top_weights.csv quantised to 4 bits (device gather/scatter at 8B)
#   4. the same 8B analysis with layer streaming on the device (one block resident), compared with the in-memory run
# Usage: bench/gpu/run.sh CWA_BINARY WORK_DIR RESULTS_DIR   (cuBLAS must be on LD_LIBRARY_PATH or in pip's nvidia/cublas/lib)
set -euo pipefail
cwa=$(readlink -f "$1"); work=$2; results=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work" "$results"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$results/gpu.txt"

status=0
python3 "$here/reference_check.py" "$cwa" "$work/ref" "$results" 2>&1 | tee "$results/reference_check.log" || status=1

"$cwa" create-test-model --preset llama-3.1-8b-shape --dtype bf16 --seed 1 --out "$work/m8b" --quiet
python3 "$here/texts.py" "$work/calib.txt" 100 4000 1
python3 "$here/texts.py" "$work/eval.txt" 8 4000 2
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$results/memory_used_mib.log" &
smi=$!
start=$(date +%s.%N)
"$cwa" analyze --model "$work/m8b" --device cuda --metric grad_x_weight --mode per_layer --topk 100 \
    --data-file "$work/calib.txt" --eval-file "$work/eval.txt" --max-samples 100 --max-length 512 --batch-size ${BATCH:-4} \
    ${EXTRA:-} --out-dir "$work/out8b" 2>&1 | tee "$results/analyze_8b.log" || status=1
end=$(date +%s.%N)
kill $smi || true
cp "$work/out8b/experiment_manifest.json" "$results/manifest_8b.json" 2>/dev/null || true
python3 "$here/summarize.py" "$work/out8b" "$results/memory_used_mib.log" "$(python3 -c "print($end - $start)")" "$gpu" | tee "$results/benchmark_8b.json" || status=1
"$cwa" perturb --model "$work/m8b" --device cuda --targets "$work/out8b/top_weights.csv" --perturb quantize --quant-bits 4 \
    --data-file "$work/eval.txt" --max-length 512 --batch-size ${BATCH:-4} --out-dir "$work/perturb8b" 2>&1 | tee "$results/perturb_8b.log" || status=1
cp "$work/perturb8b/perturbation_results.json" "$results/perturb_8b.json" 2>/dev/null || true
start=$(date +%s.%N)
"$cwa" analyze --model "$work/m8b" --device cuda --streaming on --metric grad_x_weight --mode per_layer --topk 100 \
    --data-file "$work/calib.txt" --max-samples 100 --max-length 512 --batch-size ${BATCH:-4} \
    --out-dir "$work/out8b_streamed" 2>&1 | tee "$results/analyze_8b_streamed.log" || status=1
end=$(date +%s.%N)
python3 "$here/compare_runs.py" "$work/out8b" "$work/out8b_streamed" "$(python3 -c "print($end - $start)")" | tee "$results/streamed_vs_memory_8b.json" || status=1
exit $status
