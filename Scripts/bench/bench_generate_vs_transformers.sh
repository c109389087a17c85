#!/usr/bin/env bash
# Inference benchmark, Finch next to transformers in the same run on the same machine:
# prefill of a 512-token prompt, greedy decode of 128 tokens at batch 1, peak RSS, f32 and bf16.
#   Scripts/bench/bench_generate_vs_transformers.sh [VENV]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_infer.py on transformers' f32 copy of the model (Scripts/reference/env.sh, made once).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
source Scripts/bench/common.sh
for round in 1 2; do
  for d in f32 bf16; do
    .build/release/finch bench generate --dtype "$d"
    flag=""; [ "$d" = bf16 ] && flag="--bf16"
    "$VENV/bin/python" "$REF/bench_infer.py" --model "$SMOLLM2_F32" $flag | sed 's/^{/{"engine": "transformers", /'
  done
done
