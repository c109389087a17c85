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
REF="$(cd ../shared/reference/scripts && pwd)"
WORK="${FINCH_BENCH_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/finch/bench-ref}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
swift build -c release --product finch >&2
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
if [ ! -f "$WORK/models/smollm2-f32/model.safetensors" ]; then
  mkdir -p "$WORK/models"
  cp "$REF"/*.py "$WORK/"
  ln -sf "$GGUF" "$WORK/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  (cd "$WORK" && "$VENV/bin/python" goldens.py >&2)
fi
cp "$REF/bench_infer.py" "$WORK/"
for round in 1 2; do
  for d in f32 bf16; do
    .build/release/finch bench generate --dtype "$d"
    flag=""; [ "$d" = bf16 ] && flag="--bf16"
    (cd "$WORK" && "$VENV/bin/python" bench_infer.py $flag | sed 's/^{/{"engine": "transformers", /')
  done
done
