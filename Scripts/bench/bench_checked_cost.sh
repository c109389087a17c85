#!/usr/bin/env bash
# What Swift's run-time checks cost (issue 28): the shipped build (checks on in every module but
# FinchCore's kernels) against the same commit built as before, every library module -Ounchecked
# (FINCH_BUILD_UNCHECKED=1, in .build-unchecked). ROUNDS rounds, the two builds alternating within
# each round, after a quiet-machine check; each measurement a fresh process: a LoRA training step
# (r16 all-linear, B4×T256, f32 and bf16), a QLoRA step (f32), and inference (prefill 512, decode 128;
# f32 and bf16) on SmolLM2. Appends raw JSON lines to Scripts/results/bench/checked-cost-DATE.jsonl
# (FINCH_BENCH_OUT to override) and prints medians and checked/unchecked ratios computed from them.
#   Scripts/bench/bench_checked_cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
FINCH_BUILD_UNCHECKED=1 swift build -c release --scratch-path .build-unchecked --product finch >&2
bench_start checked-cost
declare -A BIN=([checked]=.build/release/finch [unchecked]=.build-unchecked/release/finch)
for round in $(seq 1 "$ROUNDS"); do
  for build in checked unchecked; do
    f="${BIN[$build]}"
    for dt in f32 bf16; do
      "$f" bench train --model "$GGUF" --dtype "$dt" --steps 4 | raw build="$build" side="$build" round="$round" bench=train case="train $dt"
    done
    "$f" bench train --model "$GGUF" --qlora --steps 4 | raw build="$build" side="$build" round="$round" bench=qlora case="qlora f32"
    for dt in f32 bf16; do
      "$f" bench generate --model "$GGUF" --dtype "$dt" | raw build="$build" side="$build" round="$round" bench=inference case="inference $dt"
    done
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" unchecked tokens_per_s prefill512_tok_s decode128_tok_s
