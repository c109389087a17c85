#!/usr/bin/env bash
# `finch train --report-to tensorboard` read back by TensorBoard's own reader: a run on the tiny
# checkpoint with evaluations, SIGKILLed twice while it steps and resumed from its last checkpoint each
# time (so the event files hold steps that a resume logs again), then finished; tensorboard_check.py
# compares every scalar TensorBoard's EventAccumulator reads with metrics.jsonl. Uses the venv of
# Scripts/reference-venv.sh integrations (made when missing, ~10 s).
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
venv="$(Scripts/reference-venv.sh integrations)"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
args=(train --model Tests/Fixtures/tiny-llama/hf --data Examples/brindlewick.jsonl --eval-fraction 0.1 --batch-size 2
      --max-steps 300 --save-steps 20 --eval-steps 25 --logging-steps 1 --seed 5 --learning-rate 5e-4
      --report-to tensorboard --output "$out/run")
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
for kill in 1 2; do
  resume=(); ls "$out/run"/checkpoint-* >/dev/null 2>&1 && resume=(--resume "$out/run")
  before=$(lines "$out/run/metrics.jsonl")
  OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" "${resume[@]}" >/dev/null 2>&1 &
  pid=$!
  # Kill once the run has logged 50 more steps (past a checkpoint and an evaluation).
  for _ in $(seq 1 600); do
    [ "$(lines "$out/run/metrics.jsonl")" -ge $((before + 50)) ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || { echo "tensorboard_check: the run ended before kill $kill" >&2; exit 1; }
  wait "$pid" 2>/dev/null || true
done
OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --resume "$out/run" > "$out/last.log" 2>&1 || { cat "$out/last.log" >&2; exit 1; }
n=$(ls "$out/run/runs" | grep -c tfevents)
[ "$n" -eq 3 ] || { echo "tensorboard_check: $n event files, expected 3 (one per start)" >&2; exit 1; }
"$venv/bin/python" Scripts/checks/integrations/tensorboard_check.py "$out/run" 2> "$out/check.log" || { cat "$out/check.log" >&2; exit 1; }
