#!/usr/bin/env bash
# Inference benchmark, Finch next to transformers in the same run on the same machine:
# prefill of a 512-token prompt, greedy decode of 128 tokens at batch 1, peak RSS, f32 and bf16,
# Finch and transformers alternating, ROUNDS rounds (default 2), after a quiet-machine check.
#   Scripts/bench/bench_generate_vs_transformers.sh [VENV] [ROUNDS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_infer.py on transformers' f32 copy of the model (Scripts/reference/env.sh, made once).
# bf16: every weight in bf16 on both sides (transformers' norms too; Finch keeps its norms in f32).
# Appends every line to Scripts/results/bench/generate-DATE.jsonl (FINCH_BENCH_OUT to override) and
# prints a table computed from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
ROUNDS="${2:-2}"
source Scripts/bench/common.sh
bench_start generate
for round in $(seq 1 "$ROUNDS"); do
  for d in f32 bf16; do
    .build/release/finch bench generate --dtype "$d" | raw side=finch case="$d" round="$round" "$(finch_dtypes "$d")"
    flag=""; [ "$d" = bf16 ] && flag="--bf16"
    "$VENV/bin/python" "$REF/bench_infer.py" --model "$SMOLLM2_F32" $flag | raw engine=transformers side=transformers case="$d" round="$round"
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" transformers prefill512_tok_s decode128_tok_s peak_rss_mib
