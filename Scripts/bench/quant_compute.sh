#!/usr/bin/env bash
# Issue 30: what the frozen base's storage and products cost, on the default model (SmolLM2 Q4_1
# GGUF), each measurement a fresh process, ROUNDS rounds after a quiet-machine check:
#   f32 / bf16          the GGUF dequantized to --dtype (the baseline: f32)
#   blocks              its linears kept in their Q4_1 blocks, expanded to f32 for each product (exact)
#   blocks-int8         the same with --quant-compute int8 (SwitchBack int8 products, outliers in f32)
#   f32-int8, nf4, nf4-int8   int8 products on the dequantized base; QLoRA NF4 exact and int8
# Training: a LoRA step (r16 all-linear, B4×T256); inference: prefill 512 and decode 128 (f32, blocks,
# blocks-int8). Appends raw JSON lines to Scripts/results/bench/quant-compute-DATE.jsonl
# (FINCH_BENCH_OUT to override) and prints medians and ratios to f32 computed from them.
#   Scripts/bench/quant_compute.sh [ROUNDS]
# ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN's kernels (a host without VNNI or AVX-512 for every GEMM, f32 and
# int8; Finch's own small kernels keep the CPU's widest path); the machine line records it.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start quant-compute onednn_max_cpu_isa="${ONEDNN_MAX_CPU_ISA:-unset}"
F=.build/release/finch
declare -A TRAIN=(
  [f32]="--dtype f32" [bf16]="--dtype bf16" [blocks]="" [blocks-int8]="--quant-compute int8"
  [f32-int8]="--dtype f32 --quant-compute int8" [nf4]="--dtype f32 --qlora" [nf4-int8]="--dtype f32 --qlora --quant-compute int8"
)
declare -A INFER=([f32]="--dtype f32" [blocks]="--dtype f32 --blocks" [blocks-int8]="--dtype f32 --blocks --quant-compute int8")
for round in $(seq 1 "$ROUNDS"); do
  for side in f32 bf16 blocks blocks-int8 f32-int8 nf4 nf4-int8; do
    # shellcheck disable=SC2086
    "$F" bench train --model "$GGUF" --targets all --r 16 --batch 4 --seq 256 --steps 4 ${TRAIN[$side]} \
      | raw side="$side" round="$round" case="train r16 all B4xT256"
  done
  for side in f32 blocks blocks-int8; do
    # shellcheck disable=SC2086
    "$F" bench generate --model "$GGUF" ${INFER[$side]} | raw side="$side" round="$round" case="inference"
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" f32 tokens_per_s peak_rss_mib first_loss prefill512_tok_s decode128_tok_s
