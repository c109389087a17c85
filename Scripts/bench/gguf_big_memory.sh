#!/usr/bin/env bash
# Issue 30: a 7B-shaped Q4_K_M GGUF trained as it is (blocks kept mapped, embedding and head too):
# LoRA r16 all-linear, B=1, T tokens, gradient checkpointing, paged 8-bit AdamW, products exact (f32
# values expanded from the blocks a layer at a time). What `--dry-run` predicts (run peak) next to
# what a real run of STEPS steps measures (peak RSS, tokens/s), one JSON line per shape appended to
# Scripts/results/bench/gguf-big-memory-DATE.jsonl (FINCH_BENCH_OUT to override), with the machine line.
#   Scripts/bench/gguf_big_memory.sh [SHAPES] [STEPS] [T]     (default "llama2-7b" 2 256)
# The GGUF (random blocks of the real shapes, SmolLM2's tokenizer: Scripts/fixtures/make_random_gguf.py,
# ~4 GB for llama2-7b) goes to $FINCH_HOME/scale; VENV (default: the reference venv) needs gguf-py.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHAPES="${1:-llama2-7b}"
STEPS="${2:-2}"
T="${3:-256}"
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
home=${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}
mkdir -p "$home/scale"
TOKENIZER="$(Scripts/fetch-model.sh smollm2-135m)"
F=.build/release/finch
common=(--data Tests/Fixtures/perplexity/oa_answers.txt --format text --max-seq-len "$T" --lora-r 16 --lora-alpha 32
        --target-modules all-linear --batch-size 1 --gradient-checkpointing --optim paged_adamw_8bit
        --max-steps "$STEPS" --eval-steps 0 --seed 1)
bench_start gguf-big-memory
for shape in $SHAPES; do
  gguf="$home/scale/random-$shape-q4_k_m.gguf"
  [ -f "$gguf" ] || "${VENV:-$(Scripts/reference-venv.sh)}/bin/python" Scripts/fixtures/make_random_gguf.py "$gguf" "$TOKENIZER" --shape "$shape" >&2
  pred_run=$("$F" train --model "$gguf" "${common[@]}" --dry-run 2>/dev/null | grep -m1 'run peak' | awk '{print $(NF-1)}')
  out=$(mktemp -d)
  /usr/bin/time -v "$F" train --model "$gguf" "${common[@]}" --output "$out/run" 2>"$out/err" >/dev/null || { cat "$out/err" >&2; exit 1; }
  rss_kb=$(grep 'Maximum resident set size' "$out/err" | awk '{print $NF}')
  python3 - "$out/run/metrics.jsonl" "$shape" "$rss_kb" "$pred_run" "$T" "$(stat -c %s "$gguf")" <<'PY' | raw case="train $shape B1xT$T r16 all-linear" side=finch-blocks
import json, sys
path, shape, rss_kb, pred_run, T, file_bytes = sys.argv[1:7]
steps = [json.loads(l) for l in open(path) if '"loss"' in l]
tps = sorted(s["tokens_per_s"] for s in steps[1:]) or [steps[-1]["tokens_per_s"]]
rss = int(rss_kb) / 1024
print(json.dumps({"shape": shape, "file_mib": round(int(file_bytes) / 2**20), "T": int(T), "steps": len(steps),
                  "tokens_per_s_median": tps[len(tps) // 2], "peak_rss_mib": round(rss),
                  "predicted_run_peak_mib": float(pred_run), "run_prediction_error": round(float(pred_run) / rss - 1, 3),
                  "losses": [round(s["loss"], 4) for s in steps]}))
PY
  rm -rf "$out"
done
