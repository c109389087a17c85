#!/usr/bin/env bash
# Issue 30 item 5: inference on llama.cpp's own files, Finch next to llama.cpp in the same run on the
# same machine, same threads: SmolLM2 (Q4_1) and Gemma 3 270M (Q4_K_M: Q4_K, Q6_K, Q5_0, Q8_0), prefill
# of a 512-token prompt and greedy decode of 128 tokens at batch 1, peak RSS. Finch keeps the GGUF in
# its blocks (embedding and head too) and runs
#   blocks        products on f32 values expanded from the blocks (exact: the dequantized model's numbers)
#   blocks-int8   --quant-compute int8: decoding in integers on the blocks (activations quantized in
#                 groups of 32, as llama.cpp's Q8), prefill in int8 (SwitchBack, per-row scales)
# and llama.cpp (llama-cpp-python) the same file. ROUNDS rounds (default 2), alternating, after a
# quiet-machine check; every line appended to Scripts/results/bench/gguf-inference-DATE.jsonl
# (FINCH_BENCH_OUT to override), the table printed from them (ratios to llama.cpp).
#   Scripts/bench/gguf_vs_llamacpp.sh [VENV] [ROUNDS]
# VENV needs llama-cpp-python 0.3.36, built here for the native CPU (about 15 minutes on 2 cores):
#   CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV"/bin/pip install llama-cpp-python==0.3.36
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
ROUNDS="${2:-2}"
[ -n "$VENV" ] && "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null || {
  echo "usage: $0 VENV [ROUNDS]; VENV needs llama-cpp-python: CMAKE_ARGS=\"-DGGML_NATIVE=ON\" VENV/bin/pip install llama-cpp-python==0.3.36" >&2; exit 1; }
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start gguf-inference
F=.build/release/finch
for round in $(seq 1 "$ROUNDS"); do
  for model in smollm2-135m gemma3-270m; do
    gguf="$(Scripts/fetch-model.sh "$model")"
    "$F" bench generate --model "$gguf" --dtype f32 --blocks | raw side=blocks case="$model" round="$round"
    "$F" bench generate --model "$gguf" --dtype f32 --blocks --quant-compute int8 | raw side=blocks-int8 case="$model" round="$round"
    "$VENV/bin/python" Scripts/reference/bench_llamacpp.py --gguf "$gguf" | raw side=llama.cpp case="$model" round="$round"
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" llama.cpp prefill512_tok_s decode128_tok_s peak_rss_mib
