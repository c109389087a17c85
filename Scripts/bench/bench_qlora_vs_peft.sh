#!/usr/bin/env bash
# QLoRA training benchmark, same run, same machine: Finch LoRA, Finch QLoRA (NF4 + double
# quantization) and PyTorch + PEFT + bitsandbytes QLoRA (same settings), r=16 all-linear,
# B=4 × T=256, f32 and bf16 compute; tokens/s (median of STEPS steps after 2 warm-ups) and peak RSS;
# the three alternating, ROUNDS rounds (default 1), after a quiet-machine check.
#   Scripts/bench/bench_qlora_vs_peft.sh [VENV] [STEPS] [ROUNDS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py (PEFT + bitsandbytes) on transformers' f32 copy of the model.
# bf16 is like for like: Finch's `--qlora --dtype bf16` keeps embeddings / tied head in bf16 and products
# in bf16; bench_peft.py --qlora --bf16 loads the model in bf16 with bnb_4bit_compute_dtype bf16 (norms
# bf16 there, f32 in Finch; LoRA f32 on both). Every line records its side's "tensor_dtypes".
# Appends every line to Scripts/bench/results/qlora-DATE.jsonl (FINCH_BENCH_OUT to override) and
# prints a table computed from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
ROUNDS="${3:-1}"
source Scripts/bench/common.sh
bench_start qlora
for round in $(seq 1 "$ROUNDS"); do
  for d in f32 bf16; do
    .build/release/finch bench train --targets all --r 16 --dtype "$d" --steps "$STEPS" \
      | raw side=finch-lora case="$d" round="$round" "$(finch_dtypes "$d")"
    .build/release/finch bench train --targets all --r 16 --dtype "$d" --steps "$STEPS" --qlora \
      | raw side=finch case="$d" round="$round" "$(finch_dtypes "$d" qlora)"
    pargs=(--targets all --r 16 --steps "$STEPS" --qlora); [ "$d" = bf16 ] && pargs+=(--bf16)
    "$VENV/bin/python" "$REF/bench_peft.py" --model "$SMOLLM2_F32" "${pargs[@]}" | raw engine=peft side=peft-bnb case="$d" round="$round"
  done
done
# QLoRA against PEFT + bitsandbytes, and against Finch's own LoRA
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" peft-bnb tokens_per_s peak_rss_mib
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" finch-lora tokens_per_s
