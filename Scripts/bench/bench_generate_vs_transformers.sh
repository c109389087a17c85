#!/usr/bin/env bash
# Inference benchmark, Finch next to transformers in the same run on the same machine:
# prefill of a 512-token prompt, greedy decode of 128 tokens at batch 1, peak RSS, f32 and bf16.
#   Scripts/bench/bench_generate_vs_transformers.sh [VENV]
# VENV (default /work/venv, outside the repo) needs torch, transformers, accelerate, peft, gguf, safetensors;
# it runs ../shared/reference/scripts/bench_infer.py on the f32 safetensors copy of the model
# that ../shared/reference/scripts/goldens.py writes (made once, cached in $WORK).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-/work/venv}"
source Scripts/bench/common.sh
for round in 1 2; do
  for d in f32 bf16; do
    .build/release/finch bench generate --dtype "$d"
    flag=""; [ "$d" = bf16 ] && flag="--bf16"
    (cd "$WORK" && "$VENV/bin/python" bench_infer.py $flag | sed 's/^{/{"engine": "transformers", /')
  done
done
