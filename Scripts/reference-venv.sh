#!/usr/bin/env bash
# Makes (or checks) the reference venv: PyTorch, transformers, PEFT, bitsandbytes, gguf-py at the
# versions pinned in Scripts/reference/requirements.txt. Fixture and benchmark scripts run in it;
# tests never need it. Prints the venv's path on stdout.
#   Scripts/reference-venv.sh            # $FINCH_HOME/venvs/reference (default ~/.cache/finch/...)
#   FINCH_REFERENCE_VENV=DIR Scripts/reference-venv.sh
# Installs python3-venv (Debian) when `python3 -m venv` cannot make a venv, as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
req=Scripts/reference/requirements.txt
home="${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}"
venv="${FINCH_REFERENCE_VENV:-$home/venvs/reference}"
stamp="$venv/.finch-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then echo "$venv"; exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  echo "reference-venv: installing python3-venv" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
echo "reference-venv: making $venv from $req (PyTorch and friends: a few minutes)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv"
