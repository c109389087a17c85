#!/usr/bin/env bash
# QLoRA training benchmark, same run, same machine: Finch LoRA, Finch QLoRA (NF4 + double
# quantization) and PyTorch + PEFT + bitsandbytes QLoRA (same settings), r=16 all-linear,
# B=4 × T=256, f32 and bf16 compute; tokens/s (median of STEPS steps after 2 warm-ups) and peak RSS.
#   Scripts/bench/bench_qlora_vs_peft.sh [VENV] [STEPS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py (PEFT + bitsandbytes) on transformers' f32 copy of the model. Prints JSON
# lines, then ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
source Scripts/bench/common.sh
OUT="$(mktemp)"
for d in f32 bf16; do
  .build/release/finch bench train --targets all --r 16 --dtype "$d" --steps "$STEPS" | tee -a "$OUT"
  .build/release/finch bench train --targets all --r 16 --dtype "$d" --steps "$STEPS" --qlora | tee -a "$OUT"
  pargs=(--targets all --r 16 --steps "$STEPS" --qlora); [ "$d" = bf16 ] && pargs+=(--bf16)
  "$VENV/bin/python" "$REF/bench_peft.py" --model "$SMOLLM2_F32" "${pargs[@]}" | sed 's/^{/{"engine": "peft", /' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| compute | Finch LoRA tok/s | Finch QLoRA tok/s | PEFT+bnb QLoRA tok/s | QLoRA / LoRA | QLoRA / PEFT+bnb | Finch QLoRA peak RSS MiB | PEFT+bnb peak RSS MiB | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for i in range(0, len(rows), 3):
    lora, q, p = rows[i:i + 3]
    print(f"| {lora['dtype']} | {lora['tokens_per_s']} | {q['tokens_per_s']} | {p['tokens_per_s']} | "
          f"{q['tokens_per_s'] / lora['tokens_per_s']:.2f}x | {q['tokens_per_s'] / p['tokens_per_s']:.2f}x | "
          f"{q['peak_rss_mib']:.0f} | {p['peak_rss_mib']} | {q['peak_rss_mib'] / p['peak_rss_mib']:.0%} |")
PY
rm -f "$OUT"
