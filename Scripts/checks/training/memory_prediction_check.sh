#!/usr/bin/env bash
# `finch train --dry-run`'s predicted peak memory against the measured peak RSS of the same run
# (8 steps + one evaluation on Tests/Fixtures/datasets/oa_questions.jsonl, SmolLM2, r=16 all-linear,
# B=4, T≤256) for LoRA / QLoRA, f32 / bf16, with and without gradient checkpointing, and the
# 8-bit / paged optimizers; and DPO / ORPO / KTO on Examples/concise-prefs.jsonl (the reference pass included;
# KTO unpairs the pairs and scores its KL completions).
# After a quiet-machine check, appends one JSON line per configuration to
# Scripts/results/bench/memory-prediction-DATE.jsonl (FINCH_BENCH_OUT to override) and prints it.
#   Scripts/checks/training/memory_prediction_check.sh [FINCH] [DATA]      (ONLY=REGEX: only the matching configurations)
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${1:-.build/release/finch}"
DATA="${2:-Tests/Fixtures/datasets/oa_questions.jsonl}"
[ "$FINCH" = .build/release/finch ] || FINCH_BENCH_NO_BUILD=1
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start memory-prediction
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
common=(--eval-fraction 0.05 --lora-r 16 --lora-alpha 32 --target-modules all-linear
        --batch-size 4 --max-seq-len 256 --max-steps 8 --eval-steps 8)
PREFS=Examples/concise-prefs.jsonl
while read -r name data extra; do
  [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || continue
  [ "$data" = - ] && data="$DATA"; [ "$data" = PREFS ] && data="$PREFS"
  read -ra args <<< "--data $data $extra"
  predicted=$("$FINCH" train "${common[@]}" "${args[@]}" --dry-run 2>/dev/null | grep -A7 "(this run)" | awk '$1 == "predicted" && $4 == "MiB" {print $3}')
  rm -rf "$TMP/run"
  "$FINCH" train "${common[@]}" "${args[@]}" --output "$TMP/run" > /dev/null 2>&1
  measured=$(python3 -c "import json,sys; print(max(json.loads(l).get('peak_rss_mib', 0) for l in open(sys.argv[1])))" "$TMP/run/metrics.jsonl")
  python3 -c "import json,sys; p,m=float(sys.argv[2]),float(sys.argv[3]); print(json.dumps({'config': sys.argv[1], 'predicted_mib': p, 'measured_mib': round(m,1), 'error': round(p/m-1, 4)}))" "$name" "$predicted" "$measured" \
    | raw case="$name" args="$extra"
done <<'CONFIGS'
lora-f32 -
lora-f32-ckpt - --gradient-checkpointing
lora-bf16 - --dtype bf16
qlora-nf4-dq - --quantize nf4 --double-quant
qlora-nf4-dq-ckpt - --quantize nf4 --double-quant --gradient-checkpointing
qlora-nf4-dq-bf16-adamw8bit - --quantize nf4 --double-quant --dtype bf16 --optimizer adamw_8bit
qlora-nf4-dq-paged8bit-ckpt - --quantize nf4 --double-quant --optimizer paged_adamw_8bit --gradient-checkpointing
dpo-f32 PREFS --method dpo
dpo-f32-ckpt PREFS --method dpo --gradient-checkpointing
dpo-qlora-nf4-dq PREFS --method dpo --quantize nf4 --double-quant
orpo-f32 PREFS --method orpo
kto-f32 PREFS --method kto
kto-f32-ckpt PREFS --method kto --gradient-checkpointing
CONFIGS
