#!/usr/bin/env bash
# The Ollama Modelfile finch export writes, rendered by Go's text/template (the engine Ollama runs
# TEMPLATE with) and compared with the model's Jinja chat template rendered by jinja2 as
# transformers renders it (BOS text left out where the tokenizer adds BOS, as Ollama tokenizes):
# every conversation must give the same prompt text.
#
#   Scripts/checks/export/modelfile_check.sh [VENV] [MODEL]
#
# Needs Go (Debian's golang-go, installed when missing) and a venv with jinja2 and gguf
# (default: the reference venv, Scripts/reference-venv.sh, made when missing).
set -euo pipefail
cd "$(dirname "$0")/../../.."
VENV="${1:-$(Scripts/reference-venv.sh)}"
MODEL="${2:-}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
command -v go >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq golang-go >/dev/null; }
FINCH="${FINCH:-}"
if [ -z "$FINCH" ]; then swift build -c release --product finch >/dev/null; FINCH=.build/release/finch; fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
margs=(); [ -n "$MODEL" ] && margs=(--model "$MODEL")
"$FINCH" export "${margs[@]}" --type q8_0 --output "$OUT/model.gguf" >&2
"$VENV/bin/python" Scripts/checks/export/modelfile_check.py "$OUT/model.gguf" "$OUT/model.Modelfile" "$OUT"
cp Scripts/checks/export/modelfile_render.go "$OUT/main.go"
(cd "$OUT" && GO111MODULE=off GOCACHE="$OUT/.gocache" go run main.go template.txt cases.json)
