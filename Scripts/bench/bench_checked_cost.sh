#!/usr/bin/env bash
# What Swift's run-time checks cost (issue 28): the shipped build (checks on in every module but
# FinchCore's kernels) against the same commit built as before, every library module -Ounchecked
# (FINCH_BUILD_UNCHECKED=1, in .build-unchecked). ROUNDS rounds, the two builds alternating within
# each round, after a quiet-machine check; each measurement a fresh process: a LoRA training step
# (r16 all-linear, B4×T256, f32 and bf16), a QLoRA step (f32), and inference (prefill 512, decode 128;
# f32 and bf16) on SmolLM2. Appends raw JSON lines to Scripts/bench/results/checked-cost-DATE.jsonl.
#   Scripts/bench/bench_checked_cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
OUT="${FINCH_BENCH_OUT:-Scripts/bench/results/checked-cost-$(date +%Y-%m-%d).jsonl}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
swift build -c release --product finch >&2
FINCH_BUILD_UNCHECKED=1 swift build -c release --scratch-path .build-unchecked --product finch >&2
python3 Scripts/bench/rawline.py quiet
python3 Scripts/bench/rawline.py machine "$OUT" >/dev/null
declare -A BIN=([checked]=.build/release/finch [unchecked]=.build-unchecked/release/finch)
for round in $(seq 1 "$ROUNDS"); do
  for build in checked unchecked; do
    f="${BIN[$build]}"
    for dt in f32 bf16; do
      "$f" bench train --model "$GGUF" --dtype "$dt" --steps 4 | python3 Scripts/bench/rawline.py tag "$OUT" build="$build" round="$round" bench=train
    done
    "$f" bench train --model "$GGUF" --qlora --steps 4 | python3 Scripts/bench/rawline.py tag "$OUT" build="$build" round="$round" bench=qlora
    for dt in f32 bf16; do
      "$f" bench --model "$GGUF" --dtype "$dt" | python3 Scripts/bench/rawline.py tag "$OUT" build="$build" round="$round" bench=inference
    done
  done
done
echo "raw lines appended to $OUT" >&2
