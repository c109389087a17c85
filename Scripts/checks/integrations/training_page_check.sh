#!/usr/bin/env bash
# The live training page in headless Chromium: `finch train --ui` on the tiny model with evaluations and
# sample prompts, followed by training_page_check.py live (step counter, charts, sample answers, a reload,
# the end); then Ctrl-C, and `finch ui RUN_DIR` shows the finished run (training_page_check.py finished).
#   Scripts/checks/integrations/training_page_check.sh [--screenshot FILE] [MODEL STEPS EVAL_STEPS]
# (default: the tiny llama, 1500 steps, an evaluation every 500). The README's screenshot (docs/images/training-page.png):
#   TRAIN_ARGS="--lora-r 16 --lora-alpha 32 --learning-rate 1e-3 --lr-scheduler cosine --warmup-steps 3 --quant-compute int8" \
#     Scripts/checks/integrations/training_page_check.sh --screenshot docs/images/training-page.png smollm2-135m 36 9
# Installs Debian's chromium + chromium-driver when missing; uses the venv of Scripts/reference-venv.sh integrations.
set -euo pipefail
cd "$(dirname "$0")/../../.."
screenshot=""; [ "${1:-}" = "--screenshot" ] && { screenshot="$2"; shift 2; }
model="${1:-Tests/Fixtures/tiny-llama/hf}"; steps="${2:-1500}"; every="${3:-500}"
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
need=(); command -v chromium >/dev/null || need+=(chromium); command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
venv="$(Scripts/reference-venv.sh integrations)"
work="$(mktemp -d)"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
p1=$(port); p2=$(port)
printf 'Who is the mayor of Brindlewick?\nWhat is Brindlewick known for?\n' > "$work/prompts.txt"
evals=$(( (steps + every - 1) / every ))
threads=1; [ "$model" = "Tests/Fixtures/tiny-llama/hf" ] || threads=$(nproc)
OMP_NUM_THREADS=$threads "$FINCH" train --model "$model" --data Examples/brindlewick.jsonl --eval-fraction 0.1 \
  --max-steps $steps --eval-steps $every --sample-prompts "$work/prompts.txt" --sample-max-tokens 24 --logging-steps 1 --seed 3 ${TRAIN_ARGS:-} \
  --ui --ui-port "$p1" --output "$work/run" > "$work/train.log" 2>&1 &
train=$!
trap 'kill -9 $train ${ui:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p1/api/run" >/dev/null && break; sleep 0.1; done
"$venv/bin/python" Scripts/checks/integrations/training_page_check.py live --url "http://127.0.0.1:$p1/?interval=300" \
  --prompts "$work/prompts.txt" ${screenshot:+--screenshot "$screenshot"} || { cat "$work/train.log" >&2; exit 1; }
kill -INT $train; wait $train || { cat "$work/train.log" >&2; echo "training_page_check: finch train --ui did not end cleanly on Ctrl-C" >&2; exit 1; }
"$FINCH" ui "$work/run" --port "$p2" > "$work/ui.log" 2>&1 &
ui=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p2/api/run" >/dev/null && break; sleep 0.1; done
"$venv/bin/python" Scripts/checks/integrations/training_page_check.py finished --url "http://127.0.0.1:$p2/" --steps $steps --evals $evals
kill -INT $ui; wait $ui || true
echo "training_page_check: the live page followed a run to its end, and finch ui shows it finished" >&2
