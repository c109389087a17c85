#!/usr/bin/env bash
# Finch's T5 GGUF export (llama.cpp's t5 architecture) next to llama.cpp and transformers, on the tiny
# T5 v1.1 fixture with relative_attention_max_distance 128 (llama.cpp fixes that distance; Finch
# refuses to export another, which this script also checks): exports f32, f16, q8_0 and q4_0, then
# Scripts/checks/export/t5_llamacpp_check.py compares llama-quantize's bytes, llama.cpp's encoder output,
# teacher-forced logits and greedy tokens with transformers', and llama.cpp's tokenizer with
# transformers' ids. With LLAMA_CPP_SRC (a llama.cpp source tree: convert_hf_to_gguf.py, conversion/,
# gguf-py/) also llama.cpp's own converter on the same checkpoint: the same tensors, types and values.
#
#   Scripts/checks/export/t5_llamacpp_check.sh [--write-fixture]
#
# --write-fixture rewrites Tests/Fixtures/tiny-t5/v1_1/llamacpp-gguf.json (what T5GGUFTests compares with).
# Venvs: Scripts/reference-venv.sh llama-cpp and Scripts/reference-venv.sh (made when missing).
set -euo pipefail
cd "$(dirname "$0")/../../.."
FIXTURE=""; [ "${1:-}" = "--write-fixture" ] && FIXTURE=Tests/Fixtures/tiny-t5/v1_1/llamacpp-gguf.json
VENV="$(Scripts/reference-venv.sh llama-cpp)"
REF="$(Scripts/reference-venv.sh)"
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
MODEL="$OUT/tiny-t5-v1_1-md128"
cp -r Tests/Fixtures/tiny-t5/v1_1/hf "$MODEL"
python3 - "$MODEL/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["relative_attention_max_distance"] = 128
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
# Refusals: the fixture as committed (max distance 16) and q4_k_m.
for args in "--model Tests/Fixtures/tiny-t5/v1_1/hf --type f32" "--model $MODEL --type q4_k_m"; do
  if "$FINCH" export $args --output "$OUT/refused.gguf" --no-modelfile 2>"$OUT/refused.txt" >/dev/null; then
    echo "{\"check\": \"finch export refuses\", \"args\": \"$args\", \"ok\": false}"; exit 1
  fi
  echo "{\"check\": \"finch export refuses\", \"args\": \"$args\", \"message\": $(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read().strip()))' "$OUT/refused.txt"), \"ok\": true}"
done
for t in f32 f16 q8_0 q4_0; do
  "$FINCH" export --model "$MODEL" --type "$t" --output "$OUT/finch-$t.gguf" --no-modelfile >&2
done
LLAMA_CPP_SRC="${LLAMA_CPP_SRC:-}" "$REF/bin/python" Scripts/checks/export/t5_llamacpp_check.py transformers "$MODEL" "$OUT"
if [ -n "${LLAMA_CPP_SRC:-}" ]; then
  "$REF/bin/python" "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" "$OUT/convert-model" --outtype f32 --outfile "$OUT/convert-f32.gguf" >"$OUT/convert.log" 2>&1 \
    || { tail -20 "$OUT/convert.log" >&2; exit 1; }
fi
echo "{\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", \"llama_cpp_python\": \"$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')\"}"
"$VENV/bin/python" Scripts/checks/export/t5_llamacpp_check.py llamacpp "$OUT" $FIXTURE 2>"$OUT/llama.log" || { tail -40 "$OUT/llama.log" >&2; exit 1; }
