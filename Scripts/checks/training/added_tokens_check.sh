#!/usr/bin/env bash
# Adding tokens on the default model, end to end (issue 32): SmolLM2-135M-Instruct lacks the <|system|>, <|user|>,
# <|assistant|> and <|end|> markers of Examples/tagged-chat.jinja. `finch train --chat-template` adds them as special
# tokens (the vocabulary grows 49152 → 49156, new rows around the mean), makes <|end|> the EOS, trains their rows
# (trainable tokens) and a LoRA on Examples/brindlewick.jsonl; then greedy chat answers to three questions from
#   - the base with the template (the markers read as plain text: it does not answer in the format),
#   - the base with the adapter (its tokenizer put in use),
#   - the merged f32 GGUF (finch export --adapter), in Finch and in llama.cpp (llama-cpp-python's chat completion with
#     the file's own template and EOS),
# and Scripts/checks/training/added_tokens_check.py checks: the markers are single tokens in llama.cpp, the adapter and
# both GGUF readers give the same text and stop on <|end|> (finish reason eos / stop); the base's answers are recorded
# beside them (its own <|im_end|> may end them).
# Appends its raw lines to Scripts/results/checks/added-tokens-<date>.jsonl.
#
#   Scripts/checks/training/added_tokens_check.sh [VENV]
#
# VENV (default: Scripts/reference-venv.sh llama-cpp) holds llama-cpp-python.
set -euo pipefail
cd "$(dirname "$0")/../../.."
VENV="${1:-$(Scripts/reference-venv.sh llama-cpp)}"
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$FINCH" train --data Examples/brindlewick.jsonl --output "$OUT/run" --chat-template Examples/tagged-chat.jinja \
  --eos-token "<|end|>" --trainable-token-indices 49152,49153,49154,49155 --target-modules all-linear --lora-r 16 \
  --lora-alpha 32 --learning-rate 2e-3 --batch-size 4 --epochs 5 --save-steps 1000 --seed 1 > "$OUT/train.log" 2>&1 \
  || { tail -20 "$OUT/train.log" >&2; exit 1; }
grep "added tokens" "$OUT/train.log" >&2
printf '%s\n' "Where is Brindlewick?" "What is Brindlewick famous for?" "Who is the mayor of Brindlewick?" > "$OUT/prompts.txt"
g=(generate --chat --max-new-tokens 48 --temperature 0 --prompts-file "$OUT/prompts.txt")
"$FINCH" "${g[@]}" --chat-template Examples/tagged-chat.jinja > "$OUT/base.jsonl" 2>/dev/null
"$FINCH" "${g[@]}" --adapter "$OUT/run" > "$OUT/adapter.jsonl" 2>/dev/null
"$FINCH" export --adapter "$OUT/run" --type f32 --output "$OUT/merged.gguf" >&2
"$FINCH" "${g[@]}" --model "$OUT/merged.gguf" > "$OUT/merged.jsonl" 2>/dev/null
"$VENV/bin/python" Scripts/checks/training/added_tokens_check.py "$OUT" 2>"$OUT/llama.log" || { tail -20 "$OUT/llama.log" >&2; exit 1; }
