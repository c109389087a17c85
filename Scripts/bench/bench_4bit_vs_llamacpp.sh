#!/usr/bin/env bash
# 4-bit inference, Finch next to llama.cpp in the same run on the same machine: SmolLM2 with
# its block linears in NF4 + double quantization (Finch; embeddings / head in f32 or bf16)
# and llama.cpp on the Q4_1 GGUF; prefill of a 512-token prompt, greedy decode of 128 tokens
# at batch 1, 2 threads, peak RSS. Two rounds.
#   Scripts/bench/bench_4bit_vs_llamacpp.sh [VENV]
# VENV (default: the reference venv, Scripts/reference-venv.sh) runs Scripts/reference/bench_llamacpp.py and
# needs llama-cpp-python 0.3.36 besides, built here (about 15 minutes on 2 cores):
#   CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV"/bin/pip install llama-cpp-python==0.3.36
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
source Scripts/bench/common.sh
"$VENV/bin/python" -c "import llama_cpp" 2>/dev/null || {
  echo "$VENV has no llama-cpp-python: CMAKE_ARGS=\"-DGGML_NATIVE=ON\" $VENV/bin/pip install llama-cpp-python==0.3.36" >&2; exit 1; }
for round in 1 2; do
  for d in f32 bf16; do
    .build/release/finch bench generate --quantize nf4 --double-quant --dtype "$d" | sed "s/^{/{\"round\": $round, /"
  done
  "$VENV/bin/python" "$REF/bench_llamacpp.py" --gguf "$GGUF" | sed "s/^{/{\"round\": $round, /"
done
