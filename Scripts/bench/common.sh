# Sourced by the side-by-side benchmarks (after `cd` to the repository root; VENV may be set, else the
# reference venv of Scripts/reference-venv.sh is used): Scripts/reference/env.sh (VENV, REF, GGUF, WORK and
# SMOLLM2_F32, transformers' f32 copy of SmolLM2 that both engines load), then builds Finch and prints the machine.
source Scripts/reference/env.sh
swift build -c release --product finch >&2
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
