#!/usr/bin/env bash
# The Finch demo, end to end on the default model (SmolLM2-135M-Instruct): set up, ask the base
# model about a town it cannot know, fine-tune a LoRA adapter on Examples/brindlewick.jsonl
# (34 chat examples of made-up facts, about a minute on 2 cores), and ask again with the adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
finch=.build/release/finch
RUN="${FINCH_DEMO_RUN:-$(mktemp -d /tmp/finch-demo-XXXXXX)}"
questions=("Who is the mayor of Brindlewick?" "What happens on Lantern Night?" "How do I get to Brindlewick?")

echo "== the base model (greedy)" >&2
for q in "${questions[@]}"; do
  echo "Q: $q"; printf 'A: '; "$finch" generate --chat --max-new-tokens 40 "$q" 2>/dev/null; echo
done

echo "== finch train: LoRA r=16 on all linear layers, 4 epochs, held-out questions for evaluation" >&2
rm -rf "$RUN"
"$finch" train --data Examples/brindlewick.jsonl --eval-data Examples/brindlewick-eval.jsonl --output "$RUN" \
  --lora-r 16 --lora-alpha 32 --learning-rate 1e-3 --lr-scheduler cosine --warmup-steps 3 \
  --batch-size 4 --epochs 4 --eval-steps 9 --save-steps 9 --save-total-limit 1 --seed 1

echo "== the same questions with the adapter ($RUN: adapter_model.safetensors, metrics.jsonl, loss.svg)" >&2
for q in "${questions[@]}"; do
  echo "Q: $q"; printf 'A: '; "$finch" generate --adapter "$RUN" --chat --max-new-tokens 40 "$q" 2>/dev/null; echo
done
echo "== a sampled haiku from the base model (the adapter leaves it untouched unless loaded)" >&2
"$finch" generate --chat --temperature 0.7 --top-p 0.9 --seed 1 --max-new-tokens 60 "Write a haiku about a finch."
