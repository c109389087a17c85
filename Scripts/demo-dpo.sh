#!/usr/bin/env bash
# The DPO demo, end to end on the default model, SmolLM2-135M-Instruct (a chat model its makers fine-tuned
# with SFT): DPO with a LoRA adapter on Examples/concise-prefs.jsonl, which prefers answering and then stopping
# over answering and then padding (Scripts/examples/make_concise_preferences.py); the reference is the model
# itself (adapters off). Then, on 32 held-out questions (never trained on): DPO's reward accuracy (`finch eval
# preference`), the greedy answers of the model without and with the adapter (tokens per answer, the share that
# ends before the 64-token cap, the share containing the expected answer), and `finch judge` on the two answer
# sets in both orders. Ends with one JSON line (commit, CPU, settings, the figures); FINCH_DEMO_RESULTS=FILE
# appends it there too (the docs' figures come from such a line). About 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# FINCH=BINARY uses that build of finch and skips the setup (for a tree already set up and built).
if [ -z "${FINCH:-}" ]; then Scripts/setup.sh; fi
finch="${FINCH:-.build/release/finch}"
RUN="${FINCH_DEMO_RUN:-$(mktemp -d /tmp/finch-dpo-demo-XXXXXX)}"
LR="${FINCH_DPO_LR:-5e-5}" EPOCHS="${FINCH_DPO_EPOCHS:-3}" BETA="${FINCH_DPO_BETA:-0.1}"
rm -rf "$RUN"; mkdir -p "$RUN"

echo "== DPO on Examples/concise-prefs.jsonl (held-out pairs evaluated)" >&2
t0=$(date +%s.%N)
"$finch" train --method dpo --data Examples/concise-prefs.jsonl --eval-data Examples/concise-prefs-eval.jsonl \
  --output "$RUN/dpo" --beta "$BETA" --learning-rate "$LR" --lr-scheduler cosine --warmup-steps 2 \
  --batch-size 4 --epochs "$EPOCHS" --eval-steps 0 --seed 1 >&2
t1=$(date +%s.%N)

echo "== held-out reward accuracy of the DPO adapter against the model without it" >&2
"$finch" eval preference --data Examples/concise-prefs-eval.jsonl --adapter "$RUN/dpo" --beta "$BETA" > "$RUN/preference.json"
cat "$RUN/preference.json" >&2

echo "== greedy answers to the held-out questions: the model, then with the DPO adapter" >&2
"$finch" generate --data Examples/concise-questions.jsonl --output "$RUN/answers-base.jsonl" --max-new-tokens 64 >&2
"$finch" generate --data Examples/concise-questions.jsonl --adapter "$RUN/dpo" --output "$RUN/answers-dpo.jsonl" \
  --max-new-tokens 64 >&2
echo "== finch judge (SmolLM2 as the local judge), both orders" >&2
"$finch" judge --answers base="$RUN/answers-base.jsonl" --answers dpo="$RUN/answers-dpo.jsonl" --output "$RUN/judge.jsonl" \
  > "$RUN/judge.txt"
cat "$RUN/judge.txt" >&2

python3 - "$RUN" "$t0" "$t1" "${FINCH_DEMO_RESULTS:-}" "$LR" "$EPOCHS" "$BETA" <<'PY'
import json, os, re, subprocess, sys
run, t0, t1, out, lr, epochs, beta = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
padding = re.compile(r"hope this helps|let me know|anything else|feel free|happy to|wonderful day|great day|more questions|"
                     r"ai assistant|double-check|interesting|to sum up|more detailed|not alone", re.I)
def answers(side):
    rows = [json.loads(l) for l in open(f"{run}/answers-{side}.jsonl") if l.strip()]
    out = []
    for r in rows:
        text = r.get("output") or ""
        ref = r.get("reference") or ""
        key = re.findall(r"[\w\u00C0-\u024F]+", ref)
        expected = key[-1] if key else ""
        out.append({"words": len(text.split()), "tokens": r.get("output_tokens"), "padded": bool(padding.search(text)),
                    "stopped": r.get("finish_reason") != "length",
                    "correct": expected.lower() in text.lower(), "text": text})
    return out
stats = {}
for side in ("base", "dpo"):
    a = answers(side)
    stats[side] = {"answers": len(a), "mean_words": round(sum(x["words"] for x in a) / len(a), 2),
                   "mean_tokens": round(sum(x["tokens"] or 0 for x in a) / len(a), 2),
                   "padded_share": round(sum(x["padded"] for x in a) / len(a), 3),
                   "stopped_share": round(sum(x["stopped"] for x in a) / len(a), 3),
                   "expected_answer_share": round(sum(x["correct"] for x in a) / len(a), 3),
                   "examples": [x["text"] for x in a[:3]]}
metrics = [json.loads(l) for l in open(f"{run}/dpo/metrics.jsonl") if l.strip()]
evals = [m for m in metrics if "eval_loss" in m]
steps = [m for m in metrics if "lr" in m]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
line = {"demo": "dpo-concise", "commit": sha, "cpu": cpu, "cores": os.cpu_count(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"), "lr": float(lr), "epochs": float(epochs),
        "beta": float(beta), "steps": len(steps), "dpo_seconds": round(t1 - t0, 1),
        "first_loss": steps[0]["loss"] if steps else None, "last_loss": steps[-1]["loss"] if steps else None,
        "eval": evals[-1] if evals else None, "heldout_preference": json.load(open(f"{run}/preference.json")),
        "greedy": stats, "judge": open(f"{run}/judge.txt").read()}
print(json.dumps(line, ensure_ascii=False))
if out:
    with open(out, "a") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
PY
