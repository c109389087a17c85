#!/usr/bin/env bash
# Makes (or checks) a reference venv and prints its path on stdout. Fixture, check and benchmark
# scripts run in it; tests never need it.
#   Scripts/reference-venv.sh             # "reference": PyTorch, transformers, PEFT, bitsandbytes,
#                                         # gguf-py, jinja2 (Scripts/reference/requirements.txt)
#   Scripts/reference-venv.sh llama-cpp   # llama-cpp-python (Scripts/reference/requirements-llama-cpp.txt)
#   Scripts/reference-venv.sh integrations # TensorBoard, huggingface_hub (Scripts/reference/requirements-integrations.txt)
# at $FINCH_HOME/venvs/NAME (default ~/.cache/finch/venvs/NAME); FINCH_REFERENCE_VENV=DIR names
# the folder of the default one. Versions are pinned in those files; a venv whose pins changed is remade.
# Installs python3-venv (Debian) when `python3 -m venv` cannot make a venv, as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-reference}"
home="${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}"
case "$name" in
  reference) req=Scripts/reference/requirements.txt; venv="${FINCH_REFERENCE_VENV:-$home/venvs/reference}" ;;
  llama-cpp) req=Scripts/reference/requirements-llama-cpp.txt; venv="$home/venvs/llama-cpp" ;;
  integrations) req=Scripts/reference/requirements-integrations.txt; venv="$home/venvs/integrations" ;;
  *) echo "reference-venv: unknown venv '$name' (reference, llama-cpp, integrations)" >&2; exit 2 ;;
esac
stamp="$venv/.finch-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then echo "$venv"; exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  echo "reference-venv: installing python3-venv" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
echo "reference-venv: making $venv from $req (a few minutes; llama-cpp-python compiles llama.cpp: ~15)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv"
