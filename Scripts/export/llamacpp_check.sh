#!/usr/bin/env bash
# Finch's GGUF export next to llama.cpp (llama-cpp-python), on the default model (SmolLM2-135M):
# exports f32, f16, q8_0, q4_0 and q4_k_m, then Scripts/export/llamacpp_check.py compares the
# quantized files with llama-quantize's bytes, llama.cpp's logits with Finch's on every file, and
# greedy continuations of three prompts.
#
#   Scripts/export/llamacpp_check.sh [VENV] [MODEL]
#
# VENV (default /tmp/venv-llama-check) is created with llama-cpp-python, gguf and numpy when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-/tmp/venv-llama-check}"
MODEL="${2:-}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp, gguf" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q llama-cpp-python gguf numpy
fi
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
margs=(); [ -n "$MODEL" ] && margs=(--model "$MODEL")
for t in f32 f16 q8_0 q4_0 q4_k_m; do
  "$FINCH" export "${margs[@]}" --type "$t" --output "$OUT/finch-$t.gguf" --save-check "$OUT/finch-$t.check.safetensors" >&2
done
printf '%s\n' "The capital of France is" "Here is a short poem about the sea:" "def fibonacci(n):" > "$OUT/prompts.txt"
"$FINCH" generate --model "$OUT/finch-f32.gguf" --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/finch-greedy.jsonl"
echo "{\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", \"llama_cpp_python\": \"$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')\"}"
# llama.cpp logs to stderr (every tensor it quantizes): kept in a file, shown when a check fails.
"$VENV/bin/python" Scripts/export/llamacpp_check.py "$OUT" 2>"$OUT/llama.log" || { tail -40 "$OUT/llama.log" >&2; exit 1; }
