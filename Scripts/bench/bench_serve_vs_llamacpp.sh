#!/usr/bin/env bash
# `finch serve` next to llama-cpp-python's server (llama_cpp.server) on the same model (the
# SmolLM2 Q4_1 GGUF), machine and run: 16 and 64 concurrent streaming chat clients for 60 s each
# (Scripts/bench/serve_load.py: errors, aggregate tokens/s, p50/p95 time to first token and per
# output token, peak RSS). Finch decodes the clients together (continuous batching, f32 weights);
# llama.cpp's server answers one request at a time with its own 4-bit kernels (queued:
# --interrupt_requests False, else each new request cuts off the one streaming).
# Not like for like in precision (Finch f32 weights, llama.cpp Q4_1): each line records its side's weights.
# After a quiet-machine check, every line goes to Scripts/results/bench/serve-vs-llamacpp-DATE.jsonl
# (FINCH_BENCH_OUT to override), the table printed from them.
#   Scripts/bench/bench_serve_vs_llamacpp.sh [VENV] [DURATION_S]
# VENV (default /work/venv-llama, outside the repo) needs llama-cpp-python 0.3.36 with its server
# extra, built here, and aiohttp:
#   CMAKE_ARGS="-DGGML_NATIVE=ON" VENV/bin/pip install "llama-cpp-python[server]==0.3.36" aiohttp
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-/work/venv-llama}"
DURATION="${2:-60}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
FINCH=${FINCH:-.build/release/finch}
[ "$FINCH" = .build/release/finch ] || FINCH_BENCH_NO_BUILD=1
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start serve-vs-llamacpp
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
wait_ready() {
  for _ in $(seq 1 600); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not start:" >&2; cat "$log" >&2; return 1
}
for clients in 16 64; do
  "$FINCH" serve --model "$GGUF" --port "$port" --max-batch 64 --ctx 2048 >"$log" 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/health"
  "$VENV/bin/python" Scripts/bench/serve_load.py --url "http://127.0.0.1:$port/v1/chat/completions" --model smollm2-135m \
    --clients "$clients" --duration "$DURATION" --pid "$pid" --label finch \
    | raw side=finch case="$clients clients" weights=f32
  kill $pid; wait $pid 2>/dev/null || true

  "$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --port "$port" --n_threads "$(nproc)" --n_ctx 2048 --interrupt_requests False >"$log" 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/v1/models"
  "$VENV/bin/python" Scripts/bench/serve_load.py --url "http://127.0.0.1:$port/v1/chat/completions" --model smollm2-135m \
    --clients "$clients" --duration "$DURATION" --pid "$pid" --label llama_cpp.server \
    | raw side=llama_cpp.server case="$clients clients" weights=Q4_1
  kill $pid; wait $pid 2>/dev/null || true
done
rm -f "$log"
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" llama_cpp.server tokens_per_s peak_rss_mib
