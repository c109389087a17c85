#!/usr/bin/env bash
# The Finch demo, end to end on the default model (SmolLM2-135M-Instruct): set up, ask the base
# model about a town it cannot know, fine-tune a LoRA adapter on Examples/brindlewick.jsonl
# (34 chat examples of made-up facts, about a minute on 2 cores), and ask again with the adapter.
# Ends with one JSON line (commit, CPU, training seconds, eval loss before / after, the answers);
# FINCH_DEMO_RESULTS=FILE appends it there too (the README's demo figures come from such a line);
# FINCH_DEMO_QUANT_COMPUTE=int8 runs every step with --quant-compute int8 (issue 30's check that the
# answers stay the same in kind).
set -euo pipefail
cd "$(dirname "$0")/.."
# FINCH=BINARY uses that build of finch and skips the setup (for a tree already set up and built).
if [ -z "${FINCH:-}" ]; then Scripts/setup.sh; fi
finch="${FINCH:-.build/release/finch}"
RUN="${FINCH_DEMO_RUN:-$(mktemp -d /tmp/finch-demo-XXXXXX)}"
QC="${FINCH_DEMO_QUANT_COMPUTE:-exact}"
questions=("Who is the mayor of Brindlewick?" "What happens on Lantern Night?" "How do I get to Brindlewick?")

answers="$(mktemp)"; trap 'rm -f "$answers"' EXIT
echo "== the base model (greedy)" >&2
for q in "${questions[@]}"; do
  a="$("$finch" generate --quant-compute "$QC" --chat --max-new-tokens 40 "$q" 2>/dev/null)"
  echo "Q: $q"; echo "A: $a"; printf '%s\t%s\t%s\n' base "$q" "${a//$'\n'/ \\n }" >> "$answers"
done

echo "== finch train: LoRA r=16 on all linear layers, 4 epochs, held-out questions for evaluation" >&2
rm -rf "$RUN"
t0=$(date +%s.%N)
"$finch" train --quant-compute "$QC" --data Examples/brindlewick.jsonl --eval-data Examples/brindlewick-eval.jsonl --output "$RUN" \
  --lora-r 16 --lora-alpha 32 --learning-rate 1e-3 --lr-scheduler cosine --warmup-steps 3 \
  --batch-size 4 --epochs 4 --eval-steps 9 --save-steps 9 --save-total-limit 1 --seed 1
t1=$(date +%s.%N)

echo "== the same questions with the adapter ($RUN: adapter_model.safetensors, metrics.jsonl, loss.svg)" >&2
for q in "${questions[@]}"; do
  a="$("$finch" generate --quant-compute "$QC" --adapter "$RUN" --chat --max-new-tokens 40 "$q" 2>/dev/null)"
  echo "Q: $q"; echo "A: $a"; printf '%s\t%s\t%s\n' adapter "$q" "${a//$'\n'/ \\n }" >> "$answers"
done
echo "== a sampled haiku from the base model (the adapter leaves it untouched unless loaded)" >&2
"$finch" generate --chat --temperature 0.7 --top-p 0.9 --seed 1 --max-new-tokens 60 "Write a haiku about a finch."
python3 - "$RUN/metrics.jsonl" "$answers" "$t0" "$t1" "${FINCH_DEMO_RESULTS:-}" "$QC" <<'PY'
import json, os, subprocess, sys
metrics, answers, t0, t1, out, qc = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
rows = [json.loads(l) for l in open(metrics) if l.strip()]
evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
steps = max((r.get("step", 0) for r in rows), default=0)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
line = {"demo": "brindlewick", "commit": sha, "cpu": cpu, "cores": os.cpu_count(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"), "steps": steps,
        "quant_compute": qc, "train_seconds": round(t1 - t0, 1), "eval_losses": evals,
        "answers": [dict(zip(["model", "question", "answer"], l.rstrip("\n").split("\t", 2))) for l in open(answers)]}
print(json.dumps(line))
if out:
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")
PY
