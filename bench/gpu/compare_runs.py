#!/usr/bin/env python3
"""Compares two analyze runs of the same model and data (in memory and layer-streamed on the device).

Prints per-tensor top-k Jaccard and the largest relative difference of each tensor's mean score; exits 1 when a
tensor's top-k Jaccard is below 0.95 or a mean differs by more than 1e-3 (same kernels; only summation order differs).
Usage: compare_runs.py RUN_A RUN_B SECONDS_B
"""
import csv
import json
import sys
from collections import defaultdict


def top_sets(run):
    sets = defaultdict(set)
    with open(f"{run}/top_weights.csv", newline="") as f:
        for row in csv.DictReader(f):
            sets[row["parameter"]].add(row["indices"])
    return sets


def main():
    a, b, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ta, tb = top_sets(a), top_sets(b)
    sa = json.load(open(f"{a}/sensitivity_stats.json"))
    sb = json.load(open(f"{b}/sensitivity_stats.json"))
    if not ta or set(ta) != set(tb) or set(sa) != set(sb):
        print(json.dumps({"error": "the two runs rank or score different tensors", "a": sorted(set(sa)), "b": sorted(set(sb))}))
        sys.exit(1)
    jaccard = {t: len(ta[t] & tb[t]) / max(1, len(ta[t] | tb[t])) for t in ta}
    mean_diff = max(abs(sa[t]["mean"] - sb[t]["mean"]) / max(abs(sa[t]["mean"]), 1e-30) for t in sa)
    worst = min(jaccard, key=jaccard.get)
    out = {
        "streamed_seconds": seconds,
        "tensors": len(jaccard),
        "min_topk_jaccard": jaccard[worst],
        "min_topk_jaccard_tensor": worst,
        "max_relative_mean_difference": mean_diff,
        "timing_streamed": json.load(open(f"{b}/experiment_manifest.json")).get("timing"),
    }
    print(json.dumps(out, indent=2))
    sys.exit(0 if jaccard[worst] >= 0.95 and mean_diff <= 1e-3 else 1)


if __name__ == "__main__":
    main()
