#!/usr/bin/env bash
# A local judge on the Vicuna questions: SmolLM2 answers the first N questions (default 20) as
# itself (its chat template) and with a Guanaco-style adapter (qlora's "### Human: … ### Assistant:"
# format), trained here for a few steps on Tests/Fixtures/datasets/oa_questions.jsonl unless ADAPTER
# names one (training also runs MMLU at every evaluation: metrics.jsonl, loss.svg); then SmolLM2
# judges every question in both orders (finch judge). A 135M judge is a weak judge: the point is
# the machinery (both orders, position bias, Elo), not the verdict.
#   Scripts/checks/eval/judge_vicuna.sh [N]        (WORK=DIR keeps the files; ADAPTER=DIR skips training)
set -euo pipefail
cd "$(dirname "$0")/../../.."
N="${1:-20}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
WORK="${WORK:-$(mktemp -d /tmp/finch-judge-XXXXXX)}"
mkdir -p "$WORK"
DATA=Tests/Fixtures/datasets   # qlora's question sets, committed as they are
if [ -z "${ADAPTER:-}" ]; then
  ADAPTER="$WORK/guanaco"
  if [ ! -f "$ADAPTER/adapter_model.safetensors" ]; then
    rm -rf "$ADAPTER"
    "$FINCH" train --data "$DATA/oa_questions.jsonl" --output "$ADAPTER" --max-seq-len 384 \
      --lora-r 16 --lora-alpha 32 --learning-rate 5e-4 --batch-size 4 --max-steps 60 --eval-fraction 0.05 \
      --eval-steps 20 --mmlu-eval --mmlu-data Tests/Fixtures/mmlu/mmlu_zero_shot_val_40.jsonl --seed 1 >&2
  fi
fi
"$FINCH" generate --data "$DATA/vicuna_questions.jsonl" --chat --limit "$N" --max-new-tokens 128 \
  --output "$WORK/base.jsonl" 2>"$WORK/generate-base.log"
python3 - "$DATA/vicuna_questions.jsonl" "$WORK/vicuna_guanaco.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        q = json.loads(line)
        out.write(json.dumps({"question_id": q["question_id"], "input": "### Human: " + q["text"] + "### Assistant:"}) + "\n")
PY
"$FINCH" generate --adapter "$ADAPTER" --data "$WORK/vicuna_guanaco.jsonl" --format input-output --limit "$N" \
  --max-new-tokens 128 --stop "### Human:" --output "$WORK/guanaco.jsonl" 2>"$WORK/generate-guanaco.log"
"$FINCH" judge --answers base="$WORK/base.jsonl" --answers guanaco="$WORK/guanaco.jsonl" \
  --questions "$DATA/vicuna_questions.jsonl" --limit "$N" --output "$WORK/judgements.jsonl" --summary "$WORK/summary.json"
echo "files in $WORK" >&2
