#!/usr/bin/env bash
# QLoRA at 1.7B next to PyTorch + PEFT + bitsandbytes, same run, same machine: NF4 + double
# quantization, r=16 all-linear, B=1 x T=256, gradient checkpointing, AdamW, f32 and bf16 compute,
# on the random-weight SmolLM2-1.7B-shaped checkpoint of Scripts/scale/make_random_checkpoint.py.
# Tokens/s (median of STEPS steps after 2 warm-ups) and peak RSS, one JSON line each, then ratios.
#   Scripts/scale/scale_vs_peft.sh [VENV] [STEPS]
# VENV (default: the reference venv, Scripts/reference-venv.sh) runs Scripts/reference/bench_peft.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-$(Scripts/reference-venv.sh)}"
STEPS="${2:-3}"
FINCH=${FINCH:-.build/release/finch}
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
home=${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}
MODEL="$home/scale/random-smollm2-1.7b"
[ -f "$MODEL/model.safetensors.index.json" ] || \
  "$VENV/bin/python" Scripts/scale/make_random_checkpoint.py smollm2-1.7b "$MODEL" Tests/Fixtures/smollm2/hf >&2
OUT=$(mktemp)
for d in f32 bf16; do
  "$FINCH" bench train --model "$MODEL" --targets all --r 16 --batch 1 --seq 256 --gradient-checkpointing --qlora \
    --dtype "$d" --steps "$STEPS" 2>/dev/null | tee -a "$OUT"
  pargs=(--model "$MODEL" --targets all --r 16 --batch 1 --seq 256 --ckpt --qlora --steps "$STEPS"); [ "$d" = bf16 ] && pargs+=(--bf16)
  "$VENV/bin/python" Scripts/reference/bench_peft.py "${pargs[@]}" 2>/dev/null | sed 's/^{/{"engine": "peft", /' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| compute | Finch tok/s | PEFT+bnb tok/s | ratio | Finch peak RSS MiB | PEFT+bnb peak RSS MiB | RSS |")
print("|---|---|---|---|---|---|---|")
for f, p in zip(rows[0::2], rows[1::2]):
    print(f"| {f['dtype']} | {f['tokens_per_s']} | {p['tokens_per_s']} | {f['tokens_per_s'] / p['tokens_per_s']:.2f}x | "
          f"{f['peak_rss_mib']:.0f} | {p['peak_rss_mib']} | {f['peak_rss_mib'] / p['peak_rss_mib']:.0%} |")
PY
