#!/usr/bin/env bash
# MMLU on all 1531 zero-shot validation items (Tests/Fixtures/datasets/mmlu_zero_shot_val.json, qlora's file), Finch
# against transformers (Scripts/fixtures/make_mmlu_reference.py) on the same weights — transformers' f32 copy of
# SmolLM2 (Scripts/reference/make_smollm2_f32.py, through Scripts/reference/env.sh) — in qlora's style
# and lm-eval's, in the same run. Prints the items whose prediction differs (with the reference's
# margin between its two best choices), both subject-mean accuracies and items/s, appends a line to
# Scripts/eval/results/mmlu-DATE.jsonl, and fails if a prediction differs outside a near-tie
# (margin < 1e-4) or the subject means differ.
#   Scripts/eval/mmlu_check.sh [VENV] [LIMIT]
# VENV: default the reference venv (Scripts/reference-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
LIMIT="${2:-}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
source Scripts/reference/env.sh   # VENV, and SMOLLM2_F32: transformers' f32 copy of SmolLM2 (made once)
MODEL="$SMOLLM2_F32"
DATA=Tests/Fixtures/datasets/mmlu_zero_shot_val.json
out=$(mktemp -d)
limit=(); [ -n "$LIMIT" ] && limit=(--max-samples "$LIMIT")
for style in qlora harness; do
  "$FINCH" eval mmlu --model "$MODEL" --data "$DATA" --style $style "${limit[@]}" \
    --predictions "$out/finch-$style.jsonl" --output "$out/finch-$style.json" --chart "$out/mmlu-$style.svg" >/dev/null
done
reflimit=(); [ -n "$LIMIT" ] && reflimit=(--limit "$LIMIT")
"$VENV/bin/python" Scripts/fixtures/make_mmlu_reference.py "$MODEL" "$DATA" "$out/reference.json" "${reflimit[@]}" >/dev/null 2>&1
mkdir -p Scripts/eval/results
"$VENV/bin/python" Scripts/eval/mmlu_compare.py "$out" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
  | tee -a "Scripts/eval/results/mmlu-$(date +%F).jsonl"
cp "$out/mmlu-qlora.svg" docs/images/mmlu-smollm2-qlora.svg 2>/dev/null || true
