#!/usr/bin/env bash
# LLM.int8 on SmolLM2-135M against transformers + bitsandbytes (load_in_8bit, CPU):
# finch quantize --quantize int8 writes the int8 checkpoint and its logits on a prompt; then
# Scripts/checks/export/int8_check.py compares every int8 weight and SCB with bitsandbytes', Finch's
# logits with transformers', and loads Finch's checkpoint in transformers.
#
#   Scripts/checks/export/int8_check.sh [VENV]
#
# VENV (default: the reference venv, Scripts/reference-venv.sh) holds torch, transformers and bitsandbytes.
# The f32 SmolLM2 directory is transformers' copy, made once by Scripts/reference/env.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
VENV="${1:-${VENV:-}}"
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
source Scripts/reference/env.sh   # VENV, and SMOLLM2_F32: transformers' f32 copy of SmolLM2 (made once)
MODEL="$SMOLLM2_F32"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
echo "{\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", \"OPENBLAS_CORETYPE\": \"${OPENBLAS_CORETYPE:-}\"}"
# check-<i>-t<threshold>: two prompts at transformers' default threshold 6, one at 20 (fewer outlier columns).
i=0
for run in "6|The capital of France is" "6|Here is a short poem about the sea: the waves" "20|The capital of France is"; do
  i=$((i + 1)); t="${run%%|*}"; prompt="${run#*|}"
  "$FINCH" quantize --model "$MODEL" --quantize int8 --int8-threshold "$t" --output "$OUT/int8-$i-t$t" \
    --check-prompt "$prompt" --save-check "$OUT/check-$i-t$t.safetensors" >&2
done
"$VENV/bin/python" Scripts/checks/export/int8_check.py "$MODEL" "$OUT" 2>"$OUT/py.log" || { tail -20 "$OUT/py.log" >&2; exit 1; }
