#!/usr/bin/env bash
# Training benchmark, Finch next to PyTorch + PEFT in the same run on the same machine:
# LoRA steps on SmolLM2-135M, B=4 × T=256, AdamW; tokens/s (median of 6 steps after 2 warm-ups)
# and peak RSS, each configuration in a fresh process, Finch and PyTorch alternating.
#   Scripts/bench/bench_train_vs_peft.sh [VENV] [STEPS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py on transformers' f32 copy of the model (Scripts/reference/env.sh, made once).
# Prints JSON lines (engine finch / peft) and then a table of ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
source Scripts/bench/common.sh
OUT="$(mktemp)"
# targets r dtype checkpointing
CONFIGS=("qv 8 f32 no" "all 16 f32 no" "all 16 f32 yes" "qv 8 bf16 no" "all 16 bf16 no")
for c in "${CONFIGS[@]}"; do
  read -r t r d ck <<<"$c"
  fargs=(--targets "$t" --r "$r" --dtype "$d" --steps "$STEPS"); pargs=(--targets "$t" --r "$r" --steps "$STEPS")
  [ "$ck" = yes ] && { fargs+=(--gradient-checkpointing); pargs+=(--ckpt); }
  [ "$d" = bf16 ] && pargs+=(--bf16)
  .build/release/finch bench train "${fargs[@]}" | tee -a "$OUT"
  "$VENV/bin/python" "$REF/bench_peft.py" --model "$SMOLLM2_F32" "${pargs[@]}" | sed 's/^{/{"engine": "peft", /' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fin = [r for r in rows if r.get("engine") == "finch"]
pef = [r for r in rows if r.get("engine") == "peft"]
print("| configuration | Finch tok/s | PyTorch+PEFT tok/s | ratio | Finch peak RSS MiB | PyTorch peak RSS MiB | RSS ratio |")
print("|---|---|---|---|---|---|---|")
for f, p in zip(fin, pef):
    name = f"{'r=8 q/v' if f['targets'] == 'qv' else 'r=16 all-linear'}, {f['dtype']}" + (", grad. ckpt" if f["gradient_checkpointing"] else "")
    print(f"| {name} | {f['tokens_per_s']} | {p['tokens_per_s']} | {f['tokens_per_s'] / p['tokens_per_s']:.2f}x | "
          f"{f['peak_rss_mib']:.0f} | {p['peak_rss_mib']} | {f['peak_rss_mib'] / p['peak_rss_mib']:.0%} |")
PY
rm -f "$OUT"
