#!/usr/bin/env bash
# lm-evaluation-harness through `finch serve`: the same 100 MMLU items (Scripts/eval/lmeval) scored
# by lm-eval's `local-completions` model against the server (echo + prompt logprobs) and by
# lm-eval's own `hf` model (transformers) on the same weights: transformers' f32 copy of SmolLM2
# (Scripts/reference/make_smollm2_f32.py, through Scripts/reference/env.sh). Prints each item's choice from both,
# the largest log-likelihood difference, and both accuracies; fails if a choice differs.
#   Scripts/serve/lmeval_check.sh [VENV]
# VENV (default: the reference venv, Scripts/reference-venv.sh) needs lm-eval 0.4 with its API extra besides:
#   "$VENV"/bin/pip install "lm-eval[api]==0.4.*"
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
source Scripts/reference/env.sh   # VENV, and SMOLLM2_F32: transformers' f32 copy of SmolLM2 (made once)
MODEL="$SMOLLM2_F32"
out=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FINCH" serve --model "$MODEL" --port "$port" --max-batch 32 >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
common=(--tasks finch_mmlu_val100 --include_path Scripts/eval/lmeval --log_samples)
"$VENV/bin/lm_eval" --model local-completions \
  --model_args "model=smollm2-f32,base_url=http://127.0.0.1:$port/v1/completions,tokenizer=$MODEL,tokenized_requests=True,num_concurrent=8,max_retries=1" \
  "${common[@]}" --output_path "$out/finch" >"$out/finch.log" 2>&1 || { tail -30 "$out/finch.log"; exit 1; }
"$VENV/bin/lm_eval" --model hf --model_args "pretrained=$MODEL,dtype=float32" --device cpu --batch_size 8 \
  "${common[@]}" --output_path "$out/hf" >"$out/hf.log" 2>&1 || { tail -30 "$out/hf.log"; exit 1; }
"$VENV/bin/python" Scripts/serve/lmeval_compare.py "$out/finch" "$out/hf"
