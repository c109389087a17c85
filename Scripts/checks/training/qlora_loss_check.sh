#!/usr/bin/env bash
# QLoRA against f32 LoRA on a real dataset: same seed, data, batches and schedule; SmolLM2,
# r=16 all-linear, alpha 32, lr $LR (default 2e-4), B=4, T≤256, STEPS steps, eval every STEPS/4 on a 5% split.
# The issue's check: the QLoRA run's final eval loss within 3% of the f32 LoRA run's.
#   Scripts/checks/training/qlora_loss_check.sh [FINCH] [STEPS] [DATA]
# FINCH defaults to .build/release/finch; DATA to Tests/Fixtures/datasets/oa_questions.jsonl
# (OpenAssistant question/answer pairs, input/output JSON lines). Prints one JSON line per run
# and a summary line, appended (after a quiet-machine check and the machine line) to
# Scripts/results/bench/qlora-loss-DATE.jsonl (FINCH_BENCH_OUT to override); the run directories stay
# under $OUT_DIR (default: a temporary directory).
# PARALLEL=1 runs the two trainings at once (on a many-core machine; set OMP_NUM_THREADS to half).
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${1:-.build/release/finch}"
STEPS="${2:-200}"
DATA="${3:-Tests/Fixtures/datasets/oa_questions.jsonl}"
OUT_DIR="${OUT_DIR:-$(mktemp -d)}"
[ "$FINCH" = .build/release/finch ] || FINCH_BENCH_NO_BUILD=1
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start qlora-loss
LR="${LR:-2e-4}"
source Scripts/checks/training/loss_recipe.sh
loss_recipe "$DATA" "$STEPS" "$LR"
if [ "${PARALLEL:-0}" = 1 ]; then
  "$FINCH" train "${common[@]}" --output "$OUT_DIR/lora-f32" > "$OUT_DIR/lora-f32.log" 2>&1 &
  "$FINCH" train "${common[@]}" --quantize nf4 --double-quant --output "$OUT_DIR/qlora-nf4-dq" > "$OUT_DIR/qlora-nf4-dq.log" 2>&1
  wait
else
  "$FINCH" train "${common[@]}" --output "$OUT_DIR/lora-f32" >&2
  "$FINCH" train "${common[@]}" --quantize nf4 --double-quant --output "$OUT_DIR/qlora-nf4-dq" >&2
fi
python3 - "$OUT_DIR" "$STEPS" "$LR" <<'PY' | raw data="$DATA" parallel="${PARALLEL:-0}"
import json, sys, os
out, steps, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
runs = {}
for name in ("lora-f32", "qlora-nf4-dq"):
    rows = [json.loads(l) for l in open(os.path.join(out, name, "metrics.jsonl")) if l.strip()]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    train = [r["loss"] for r in rows if "loss" in r and "eval_loss" not in r]
    rss = max((r.get("peak_rss_mib", 0) for r in rows), default=0)
    runs[name] = evals
    print(json.dumps({"run": name, "steps": steps, "learning_rate": lr, "eval_loss": evals, "last_train_loss": train[-1] if train else None,
                      "peak_rss_mib": rss}))
a, b = runs["lora-f32"][-1][1], runs["qlora-nf4-dq"][-1][1]
rel = abs(b - a) / a
print(json.dumps({"summary": "final eval loss", "learning_rate": lr, "lora_f32": a, "qlora_nf4_dq": b, "relative_difference": round(rel, 4),
                  "within_3_percent": rel <= 0.03}))
PY
