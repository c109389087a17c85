#!/usr/bin/env bash
# The Finch demo, end to end on the default model (SmolLM2-135M-Instruct): set up, then generate.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
echo "== finch generate (greedy with a repetition penalty, plain prompt)" >&2
.build/release/finch generate --max-new-tokens 40 --repetition-penalty 1.3 "The three most important things about birds are"
echo "== finch generate --chat (sampled, seed 1)" >&2
.build/release/finch generate --chat --temperature 0.7 --top-p 0.9 --seed 1 --max-new-tokens 80 \
  "Write a haiku about a finch."
