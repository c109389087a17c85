#!/usr/bin/env bash
# Issue 30's quality check: --quant-compute int8 against exact products on the same base, same seed,
# data, batches and schedule: STEPS steps of LoRA (r 16 all-linear, alpha 32, lr 2e-4, B 4, T ≤ 256),
# eval every STEPS/4 on a 5% split. Pairs (exact, int8): SmolLM2 Q4_1 kept in its blocks (the
# default), SmolLM2 dequantized to f32, SmolLM2 quantized to NF4; with CASES="... gemma3" also Gemma 3
# 270M Q4_K_M in its blocks, with "q8_0" / "q4_k_m" SmolLM2 written to those types by `finch export`
# (from the Q4_1 file: the same weights in another file type, llama-quantize's mix and quantizers). The issue's bound: the int8 run's final eval loss within 1% of the exact one's.
#   Scripts/checks/training/quant_compute_check.sh [FINCH] [STEPS] [DATA]
# FINCH defaults to .build/release/finch, STEPS to 200, DATA to Tests/Fixtures/datasets/oa_questions.jsonl.
# One JSON line per run and one per pair, appended (after a quiet-machine check and the machine line)
# to Scripts/results/bench/quant-compute-quality-DATE.jsonl (FINCH_BENCH_OUT to override); the run
# directories stay under $OUT_DIR (default: a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${1:-.build/release/finch}"
STEPS="${2:-200}"
DATA="${3:-Tests/Fixtures/datasets/oa_questions.jsonl}"
OUT_DIR="${OUT_DIR:-$(mktemp -d)}"
CASES="${CASES:-blocks f32 nf4}"
[ "$FINCH" = .build/release/finch ] || FINCH_BENCH_NO_BUILD=1
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start quant-compute-quality steps="$STEPS" cases="$CASES"
source Scripts/checks/training/loss_recipe.sh
loss_recipe "$DATA" "$STEPS"
declare -A BASE=([blocks]="" [f32]="--dtype f32" [nf4]="--dtype f32 --quantize nf4 --double-quant"
                 [gemma3]="--model $(Scripts/fetch-model.sh gemma3-270m 2>/dev/null || echo gemma3-270m)")
for t in q8_0 q4_k_m; do
  if [[ " $CASES " == *" $t "* ]]; then
    [ -f "$OUT_DIR/smollm2-$t.gguf" ] || "$FINCH" export --type "$t" --output "$OUT_DIR/smollm2-$t.gguf" >&2
    BASE[$t]="--model $OUT_DIR/smollm2-$t.gguf"
  fi
done
for c in $CASES; do
  for q in exact int8; do
    # shellcheck disable=SC2086
    "$FINCH" train "${common[@]}" ${BASE[$c]} --quant-compute "$q" --output "$OUT_DIR/$c-$q" >&2
  done
done
python3 - "$OUT_DIR" "$STEPS" $CASES <<'PY' | raw data="$DATA"
import json, sys, os
out, steps, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for c in cases:
    final = {}
    for q in ("exact", "int8"):
        rows = [json.loads(l) for l in open(os.path.join(out, f"{c}-{q}", "metrics.jsonl")) if l.strip()]
        evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
        train = [r for r in rows if "loss" in r and "eval_loss" not in r]
        final[q] = evals[-1][1]
        print(json.dumps({"case": c, "quant_compute": q, "steps": steps, "eval_loss": evals,
                          "last_train_loss": train[-1]["loss"] if train else None,
                          "median_tokens_per_s": sorted(r["tokens_per_s"] for r in train)[len(train) // 2] if train else None,
                          "peak_rss_mib": max((r.get("peak_rss_mib", 0) for r in rows), default=0)}))
    rel = abs(final["int8"] - final["exact"]) / final["exact"]
    print(json.dumps({"summary": "final eval loss, int8 against exact", "case": c, "exact": final["exact"], "int8": final["int8"],
                      "relative_difference": round(rel, 4), "within_1_percent": rel <= 0.01}))
PY
