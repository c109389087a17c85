#!/usr/bin/env bash
# MMLU, Finch against a reference on the same weights: transformers' f32 copy of SmolLM2
# (Scripts/reference/make_smollm2_f32.py, through Scripts/reference/env.sh). Two ways in:
#
#   Scripts/checks/eval/mmlu_check.sh eval [VENV] [LIMIT]
#     `finch eval mmlu` on all 1531 zero-shot validation items (Tests/Fixtures/datasets/mmlu_zero_shot_val.json,
#     qlora's file; LIMIT items if given) against transformers (Scripts/fixtures/make_mmlu_reference.py), in
#     qlora's style and lm-eval's, in the same run. Prints the items whose prediction differs (with the
#     reference's margin between its two best choices), both subject-mean accuracies and items/s, appends a
#     line to Scripts/results/eval/mmlu-DATE.jsonl, and fails if a prediction differs outside a near-tie
#     (margin < 1e-4) or the subject means differ.
#   Scripts/checks/eval/mmlu_check.sh serve [VENV]
#     lm-evaluation-harness through `finch serve`: the same 100 MMLU items (Scripts/checks/eval/lmeval) scored
#     by lm-eval's `local-completions` model against the server (echo + prompt logprobs) and by lm-eval's
#     own `hf` model (transformers). Prints each item's choice from both, the largest log-likelihood
#     difference, and both accuracies; fails if a choice differs. VENV needs lm-eval 0.4 with its API extra:
#       "$VENV"/bin/pip install "lm-eval[api]==0.4.*"
#
# VENV: default the reference venv (Scripts/reference-venv.sh). FINCH: the binary (default .build/release/finch,
# built if missing).
set -euo pipefail
cd "$(dirname "$0")/../../.."
MODE="${1:-}"
case "$MODE" in eval|serve) ;; *) echo "usage: $0 eval [VENV] [LIMIT] | serve [VENV]" >&2; exit 2 ;; esac
VENV="${2:-${VENV:-}}"
LIMIT="${3:-}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
source Scripts/reference/env.sh   # VENV, and SMOLLM2_F32: transformers' f32 copy of SmolLM2 (made once)
MODEL="$SMOLLM2_F32"
out=$(mktemp -d)

if [ "$MODE" = eval ]; then
  DATA=Tests/Fixtures/datasets/mmlu_zero_shot_val.json
  limit=(); [ -n "$LIMIT" ] && limit=(--max-samples "$LIMIT")
  for style in qlora harness; do
    "$FINCH" eval mmlu --model "$MODEL" --data "$DATA" --style $style "${limit[@]}" \
      --predictions "$out/finch-$style.jsonl" --output "$out/finch-$style.json" --chart "$out/mmlu-$style.svg" >/dev/null
  done
  reflimit=(); [ -n "$LIMIT" ] && reflimit=(--limit "$LIMIT")
  "$VENV/bin/python" Scripts/fixtures/make_mmlu_reference.py "$MODEL" "$DATA" "$out/reference.json" "${reflimit[@]}" >/dev/null 2>&1
  mkdir -p Scripts/results/eval
  "$VENV/bin/python" Scripts/checks/eval/mmlu_compare.py "$out" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    | tee -a "Scripts/results/eval/mmlu-$(date +%F).jsonl"
  cp "$out/mmlu-qlora.svg" docs/images/mmlu-smollm2-qlora.svg 2>/dev/null || true
  exit 0
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FINCH" serve --model "$MODEL" --port "$port" --max-batch 32 >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
common=(--tasks finch_mmlu_val100 --include_path Scripts/checks/eval/lmeval --log_samples)
"$VENV/bin/lm_eval" --model local-completions \
  --model_args "model=smollm2-f32,base_url=http://127.0.0.1:$port/v1/completions,tokenizer=$MODEL,tokenized_requests=True,num_concurrent=8,max_retries=1" \
  "${common[@]}" --output_path "$out/finch" >"$out/finch.log" 2>&1 || { tail -30 "$out/finch.log"; exit 1; }
"$VENV/bin/lm_eval" --model hf --model_args "pretrained=$MODEL,dtype=float32" --device cpu --batch_size 8 \
  "${common[@]}" --output_path "$out/hf" >"$out/hf.log" 2>&1 || { tail -30 "$out/hf.log"; exit 1; }
"$VENV/bin/python" Scripts/checks/eval/lmeval_compare.py "$out/finch" "$out/hf"
