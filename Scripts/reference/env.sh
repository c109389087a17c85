# Sourced (after `cd` to the repository root) by every script that runs a reference tool next to Finch.
# Sets, without building anything:
#   VENV         the reference venv: Scripts/reference-venv.sh (PyTorch, transformers, PEFT, bitsandbytes,
#                gguf-py at the versions pinned in Scripts/reference/requirements.txt; made on first use),
#                unless VENV is already set (the scripts also take it as their first argument)
#   REF          Scripts/reference: bench_peft.py, bench_infer.py, bench_llamacpp.py, make_smollm2_f32.py
#   GGUF         the SmolLM2-135M-Instruct Q4_1 GGUF (Scripts/fetch-model.sh smollm2-135m)
#   WORK         a cache outside the repository for models the reference tools read:
#                $FINCH_BENCH_WORK, else $FINCH_HOME/bench-ref (default ~/.cache/finch/bench-ref)
#   SMOLLM2_F32  transformers' float32 copy of SmolLM2, $WORK/models/smollm2-f32, made once by
#                Scripts/reference/make_smollm2_f32.py (Finch and the reference tools load the same weights)
REF=Scripts/reference
if [ -z "${VENV:-}" ]; then VENV="$(Scripts/reference-venv.sh)"; fi
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
WORK="${FINCH_BENCH_WORK:-${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}/bench-ref}"
SMOLLM2_F32="$WORK/models/smollm2-f32"
if [ ! -f "$SMOLLM2_F32/model.safetensors" ]; then
  mkdir -p "$WORK/models"
  echo "reference: writing transformers' f32 copy of SmolLM2 to $SMOLLM2_F32" >&2
  "$VENV/bin/python" "$REF/make_smollm2_f32.py" "$SMOLLM2_F32" "$GGUF" >&2
fi
