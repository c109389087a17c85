#!/usr/bin/env bash
# Big models on a small machine: Finch QLoRA (NF4 + double quantization, r=16 all-linear, B=1,
# gradient checkpointing, paged 8-bit AdamW) on random-weight checkpoints of real shapes written by
# Scripts/fixtures/make_random_checkpoint.py (shard by shard). For each shape: what `--dry-run`
# predicts (load peak, run peak) next to what a real run of STEPS steps measures (peak RSS, load
# time, tokens/s), one JSON line each, after the machine line (commit, CPU, ISA, threads), appended to
# Scripts/results/bench/big-model-memory-DATE.jsonl. olmoe-1b-7b next to olmoe-1b-7b-dense: a mixture of
# experts against the dense model of its active size.
#   Scripts/bench/big_model_memory.sh [SHAPES] [STEPS] [T]     (default "smollm2-135m smollm2-1.7b" 3 512)
# VENV (default: the reference venv, Scripts/reference-venv.sh) needs torch and safetensors; checkpoints go to
# $FINCH_HOME/scale (bf16 on disk: 0.27, 3.4 and ~14 GB), with SmolLM2's tokenizer as transformers writes it
# (Tests/Fixtures/smollm2/hf).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHAPES="${1:-smollm2-135m smollm2-1.7b}"
STEPS="${2:-3}"
T="${3:-512}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] && export FINCH_BENCH_NO_BUILD=1
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start big-model-memory shapes="$SHAPES" steps="$STEPS" T="$T"
home=${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}
WORK="$home/scale"
mkdir -p "$WORK"
TOKENIZER=Tests/Fixtures/smollm2/hf
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)
common=(--data Tests/Fixtures/perplexity/oa_answers.txt --format text --max-seq-len "$T" --quantize nf4 --double-quant
        --lora-r 16 --lora-alpha 32 --target-modules all-linear --batch-size 1 --gradient-checkpointing
        --optim paged_adamw_8bit --max-steps "$STEPS" --eval-steps 0 --seed 1)
for shape in $SHAPES; do
  dir="$WORK/random-$shape"
  if [ ! -f "$dir/model.safetensors.index.json" ]; then
    rm -rf "$dir"
    "${VENV:-$(Scripts/reference-venv.sh)}/bin/python" Scripts/fixtures/make_random_checkpoint.py "$shape" "$dir" "$TOKENIZER" >&2
  fi
  dry=$("$FINCH" train --model "$dir" "${common[@]}" --dry-run 2>/dev/null)
  pred_load=$(echo "$dry" | sed -n 's/^loading: predicted peak \([0-9.]*\) MiB, measured in this dry run \([0-9.]*\) MiB.*/\1 \2/p')
  pred_run=$(echo "$dry" | grep -m1 'run peak' | awk '{print $(NF-1)}')
  out=$(mktemp -d)
  /usr/bin/time -v "$FINCH" train --model "$dir" "${common[@]}" --output "$out/run" 2>"$out/err" >/dev/null
  rss_kb=$(grep 'Maximum resident set size' "$out/err" | awk '{print $NF}')
  load_s=$(sed -n 's/^loaded .* in \([0-9.]*\) s.*/\1/p' "$out/err" | head -1)
  (python3 - "$out/run/metrics.jsonl" "$shape" "$cpu" "$rss_kb" "$load_s" "$pred_run" $pred_load "$T" <<'PY'
import json, sys
path, shape, cpu, rss_kb, load_s, pred_run, pred_load, meas_load, T = sys.argv[1:10]
steps = [json.loads(l) for l in open(path) if '"loss"' in l]
tps = sorted(s["tokens_per_s"] for s in steps[1:]) or [steps[-1]["tokens_per_s"]]
rss = int(rss_kb) / 1024
print(json.dumps({"shape": shape, "cpu": cpu, "T": int(T), "steps": len(steps), "tokens_per_s_median": tps[len(tps) // 2],
                  "peak_rss_mib": round(rss), "predicted_run_peak_mib": float(pred_run),
                  "run_prediction_error": round(float(pred_run) / rss - 1, 3),
                  "predicted_load_peak_mib": float(pred_load), "dry_run_load_peak_mib": float(meas_load),
                  "load_prediction_error": round(float(pred_load) / float(meas_load) - 1, 3),
                  "load_s": float(load_s or 0), "losses": [round(s["loss"], 4) for s in steps]}))
PY
  ) | raw
  rm -rf "$out"
done
