#!/usr/bin/env bash
# Submits N shard tasks and the merge that waits for all of them:
#   MODEL=/models/llama-3.1-8b DATA=/data/calib.jsonl WORK=/scratch/cwa-run deploy/slurm/submit.sh 8
set -euo pipefail
n=${1:?usage: submit.sh NUMBER_OF_SHARDS}
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array=1-"$n" --export=ALL "$here/analyze-shard.sbatch")
sbatch --dependency=afterok:"${array%%;*}" --export=ALL "$here/merge.sbatch"
