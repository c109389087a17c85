# Sourced by the side-by-side benchmarks (after `cd` to the repository root, with VENV set):
# builds Finch, prints the machine, and makes sure $WORK holds the reference scripts and the
# f32 safetensors copy of SmolLM2 that ../shared/reference/scripts/goldens.py writes (made once).
REF="$(cd ../shared/reference/scripts && pwd)"
WORK="${FINCH_BENCH_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/finch/bench-ref}"
GGUF="$(Scripts/fetch-model.sh smollm2-135m)"
swift build -c release --product finch >&2
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
if [ ! -f "$WORK/models/smollm2-f32/model.safetensors" ]; then
  mkdir -p "$WORK/models"
  cp "$REF"/*.py "$WORK/"
  ln -sf "$GGUF" "$WORK/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  (cd "$WORK" && "$VENV/bin/python" goldens.py >&2)
fi
cp "$REF"/bench_*.py "$WORK/"
