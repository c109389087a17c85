#!/usr/bin/env bash
# Data-parallel scaling on this machine: SmolLM2-135M, LoRA r 16 on all linear layers, f32,
# batch 4 × up to 256 tokens per rank, one thread per rank: 1 rank against 2 ranks (mpirun).
# Prints tokens/s, step time p50/p95 and the time and bytes of the gradient sums per step, then
# a projection to 8 and 64 hosts on 10 and 100 Gbit/s links for SmolLM2 and a 7B model (r 16
# all-linear) from those measurements (Scripts/bench/data_parallel_projection.py).
#
#   Scripts/bench/data_parallel_ranks.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${1:-12}"
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release --product finch >&2
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
DATA="${DATA:-Tests/Fixtures/datasets/oa_questions.jsonl}"
common=(train --data "$DATA" --lora-r 16 --lora-alpha 32 --target-modules all-linear --batch-size 4 --max-seq-len 256
        --max-steps "$STEPS" --save-steps 0 --logging-steps 1 --seed 1)
OMP_NUM_THREADS=1 "$FINCH" "${common[@]}" --output "$OUT/r1" >/dev/null 2>&1
mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 \
  "$FINCH" "${common[@]}" --output "$OUT/r2" >/dev/null 2>&1
python3 Scripts/bench/data_parallel_projection.py "$OUT/r1/metrics.jsonl" "$OUT/r2/metrics.jsonl"
