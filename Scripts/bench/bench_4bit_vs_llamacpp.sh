#!/usr/bin/env bash
# 4-bit inference, Finch next to llama.cpp in the same run on the same machine: SmolLM2 with
# its block linears in NF4 + double quantization (Finch; embeddings / head in f32 or bf16)
# and llama.cpp on the Q4_1 GGUF; prefill of a 512-token prompt, greedy decode of 128 tokens
# at batch 1, 2 threads, peak RSS. ROUNDS rounds (default 2), alternating, after a quiet-machine check;
# every line appended to Scripts/results/bench/4bit-inference-DATE.jsonl (FINCH_BENCH_OUT to override),
# the table printed from them. Not like for like in format (NF4 + f32/bf16 head against Q4_1 with a
# Q4_1/Q6 head as the GGUF stores it): each line records its side's weights.
#   Scripts/bench/bench_4bit_vs_llamacpp.sh [VENV] [ROUNDS]
# VENV (default: the reference venv, Scripts/reference-venv.sh) runs Scripts/reference/bench_llamacpp.py and
# needs llama-cpp-python 0.3.36 besides, built here (about 15 minutes on 2 cores):
#   CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV"/bin/pip install llama-cpp-python==0.3.36
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
ROUNDS="${2:-2}"
source Scripts/bench/common.sh
"$VENV/bin/python" -c "import llama_cpp" 2>/dev/null || {
  echo "$VENV has no llama-cpp-python: CMAKE_ARGS=\"-DGGML_NATIVE=ON\" $VENV/bin/pip install llama-cpp-python==0.3.36" >&2; exit 1; }
bench_start 4bit-inference
for round in $(seq 1 "$ROUNDS"); do
  for d in f32 bf16; do
    .build/release/finch bench generate --quantize nf4 --double-quant --dtype "$d" | raw side="finch-nf4-$d" case=4bit round="$round" "$(finch_dtypes "$d" qlora)"
  done
  "$VENV/bin/python" "$REF/bench_llamacpp.py" --gguf "$GGUF" | raw side=llama.cpp case=4bit round="$round" tensor_dtypes='{"linears": "Q4_1 (as the GGUF stores them)"}'
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" llama.cpp prefill512_tok_s decode128_tok_s peak_rss_mib
