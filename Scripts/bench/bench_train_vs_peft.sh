#!/usr/bin/env bash
# Training benchmark, Finch next to PyTorch + PEFT in the same run on the same machine:
# LoRA steps on SmolLM2-135M, B=4 × T=256, AdamW; tokens/s (median of STEPS steps after 2 warm-ups)
# and peak RSS, each configuration in a fresh process, Finch and PyTorch alternating, ROUNDS rounds,
# after a quiet-machine check.
#   Scripts/bench/bench_train_vs_peft.sh [VENV] [STEPS] [ROUNDS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py on transformers' f32 copy of the model (Scripts/reference/env.sh, made once).
# Precision is like for like: f32 rows all f32 on both sides; bf16 rows load the model in bf16 on both sides
# (linears, embeddings, tied head), LoRA A/B in f32, no autocast (PyTorch's norms bf16, Finch's f32; each line
# records its side's "tensor_dtypes"). FINCH_BENCH_AUTOCAST=1 adds PyTorch's old f32-weights + bf16-autocast
# variant to the bf16 rows, labelled "peft-autocast".
# Appends every line (quiet check, machine, one per measurement, tagged with the run) to
# Scripts/bench/results/train-DATE.jsonl (FINCH_BENCH_OUT to override) and prints a table computed from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
ROUNDS="${3:-2}"
source Scripts/bench/common.sh
bench_start train
# targets r dtype checkpointing
CONFIGS=("qv 8 f32 no" "all 16 f32 no" "all 16 f32 yes" "qv 8 bf16 no" "all 16 bf16 no")
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONFIGS[@]}"; do
    read -r t r d ck <<<"$c"
    fargs=(--targets "$t" --r "$r" --dtype "$d" --steps "$STEPS"); pargs=(--targets "$t" --r "$r" --steps "$STEPS")
    [ "$ck" = yes ] && { fargs+=(--gradient-checkpointing); pargs+=(--ckpt); }
    [ "$d" = bf16 ] && pargs+=(--bf16)
    name="$t r$r $d"; [ "$ck" = yes ] && name+=" ckpt"
    .build/release/finch bench train "${fargs[@]}" | raw side=finch case="$name" round="$round" "$(finch_dtypes "$d")"
    "$VENV/bin/python" "$REF/bench_peft.py" --model "$SMOLLM2_F32" "${pargs[@]}" | raw engine=peft side=peft case="$name" round="$round"
    if [ "$d" = bf16 ] && [ "${FINCH_BENCH_AUTOCAST:-0}" = 1 ]; then
      pa=("${pargs[@]/--bf16/--bf16-autocast}")
      "$VENV/bin/python" "$REF/bench_peft.py" --model "$SMOLLM2_F32" "${pa[@]}" | raw engine=peft side=peft-autocast case="$name" round="$round"
    fi
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" peft tokens_per_s peak_rss_mib
