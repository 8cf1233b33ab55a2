#!/usr/bin/env python3
"""Issue #7 reference check, run on a GPU host with PyTorch and transformers.

Generates a small fp32 Llama checkpoint with `cwa create-test-model`, runs `cwa analyze` on it (grad_x_weight,
per_layer, top-100) with --device cuda and --device cpu, and recomputes the same quantity with transformers'
LlamaForCausalLM in fp32 on the GPU from the exact token batches cwa used (--save-tokens): the calibration loss
(token-weighted mean NLL) and G = sum over batches of the gradient of each batch's mean next-token loss, then
|G * W| and its top-100 per 2-D tensor. Pass: loss relative difference < 1e-4 and top-100 Jaccard >= 0.95 for
every tensor, for both cwa devices.

Usage: reference_check.py CWA_BINARY WORK_DIR RESULTS_DIR
"""
import csv
import json
import os
import subprocess
import sys

import torch
from transformers import LlamaForCausalLM

cwa, work, results = sys.argv[1], sys.argv[2], sys.argv[3]
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(work, exist_ok=True)
os.makedirs(results, exist_ok=True)
K = 100


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


model = os.path.join(work, "ref-model")
calib, held_out = os.path.join(work, "calib.txt"), os.path.join(work, "eval.txt")
run([cwa, "create-test-model", "--preset", "small", "--dtype", "f32", "--seed", "1", "--out", model, "--quiet"])
run([sys.executable, os.path.join(here, "texts.py"), calib, "32", "900", "1"])
run([sys.executable, os.path.join(here, "texts.py"), held_out, "4", "900", "2"])

ours = {}
for device in ["cuda", "cpu"]:
    out = os.path.join(work, "ours-" + device)
    run([cwa, "analyze", "--model", model, "--device", device, "--dtype", "f32", "--metric", "grad_x_weight", "--mode", "per_layer",
         "--topk", str(K), "--data-file", calib, "--eval-file", held_out, "--max-samples", "32", "--max-length", "128", "--batch-size", "4",
         "--save-tokens", "--save-plots", "false", "--quiet", "--out-dir", out])
    ours[device] = out

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
net = LlamaForCausalLM.from_pretrained(model, torch_dtype=torch.float32, attn_implementation="eager").cuda()
net.train(False)

batches = {}
with open(os.path.join(ours["cuda"], "calibration_tokens.jsonl")) as f:
    for line in f:
        row = json.loads(line)
        batches.setdefault(row["batch"], []).append(row["tokens"])

total_nll, total_targets = 0.0, 0
for b in sorted(batches):
    seqs = batches[b]
    length = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), length, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    ids, mask = ids.cuda(), mask.cuda()
    logits = net(input_ids=ids, attention_mask=mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    nll = nll[mask[:, 1:].bool()]
    nll.mean().backward()  # .grad accumulates: G = sum over batches of the batch-mean-loss gradient
    total_nll += nll.sum().item()
    total_targets += nll.numel()
reference_loss = total_nll / total_targets

params = dict(net.named_parameters())
reference_top = {}
for name, p in params.items():
    if p.dim() != 2:
        continue
    score = (p.grad * p.data).abs().flatten()
    idx = torch.topk(score, K).indices.cpu().tolist()
    reference_top[name] = {(i // p.shape[1], i % p.shape[1]) for i in idx}

report = {"reference": "transformers LlamaForCausalLM fp32 (eager attention, no TF32)", "reference_loss": reference_loss, "devices": {}}
ok = True
for device, out in ours.items():
    manifest = json.load(open(os.path.join(out, "experiment_manifest.json")))
    loss = manifest["results"]["calibration loss"]
    top = {}
    with open(os.path.join(out, "top_weights.csv")) as f:
        for row in csv.DictReader(f):
            top.setdefault(row["parameter"], set()).add((int(row["row"]), int(row["col"])))
    jaccard = {n: len(s & top.get(n, set())) / len(s | top.get(n, set())) for n, s in reference_top.items()}
    rel = abs(loss - reference_loss) / reference_loss
    passed = rel < 1e-4 and min(jaccard.values()) >= 0.95 and set(top) == set(reference_top)
    ok &= passed
    report["devices"][device] = {"loss": loss, "relative_loss_difference": rel, "min_jaccard": min(jaccard.values()),
                                 "mean_jaccard": sum(jaccard.values()) / len(jaccard), "tensors": len(jaccard),
                                 "worst_tensors": sorted(jaccard.items(), key=lambda kv: kv[1])[:5], "passed": passed}
    print(f"{device}: loss {loss:.7f} vs {reference_loss:.7f} (rel {rel:.2e}); top-{K} Jaccard min {min(jaccard.values()):.3f} "
          f"mean {report['devices'][device]['mean_jaccard']:.4f} over {len(jaccard)} tensors -> {'PASS' if passed else 'FAIL'}", flush=True)

json.dump(report, open(os.path.join(results, "reference_check.json"), "w"), indent=2)
sys.exit(0 if ok else 1)
