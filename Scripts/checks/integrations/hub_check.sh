#!/usr/bin/env bash
# Models by Hub id end to end, against the fake Hub (fake_hub.py, the Hub's API on loopback) and the real
# huggingface_hub package:
#   - `finch train --model finch-test/tiny-llama` downloads the model into a fresh Hugging Face cache
#     (HF_HOME) and trains; `finch serve` loads an adapter by Hub id at run time (POST /v1/adapters),
#     downloading it, and serves it; `finch generate --adapter finch-test/tiny-llama-lora` uses it;
#   - with the Hub gone, the same commands run from the cache, with HF_HUB_OFFLINE=1 and without (a notice);
#   - huggingface_hub reads the cache Finch wrote, offline: the same snapshots, every file's bytes, and
#     scan_cache_dir without a warning.
# Uses the venv of Scripts/reference-venv.sh integrations.
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${FINCH:-$PWD/.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
venv="$(Scripts/reference-venv.sh integrations)"
work="$(mktemp -d)"
"$venv/bin/python" Scripts/checks/integrations/fake_hub.py "$work/port" finch-test/tiny-llama=Tests/Fixtures/tiny-llama/hf \
  finch-test/tiny-llama-lora=Tests/Fixtures/tiny-llama/peft-trained/trained &
hub=$!
trap 'kill $hub 2>/dev/null || true; wait $hub 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
export HF_HOME="$work/hf" HF_ENDPOINT="http://127.0.0.1:$(cat "$work/port")"
unset HF_TOKEN HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HUB_OFFLINE
fail() { echo "hub_check: $*" >&2; exit 1; }

"$FINCH" train --model finch-test/tiny-llama --data Examples/brindlewick.jsonl --max-steps 3 --output "$work/run" > "$work/train.log" 2>&1 \
  || { cat "$work/train.log" >&2; fail "training on a Hub id failed"; }
grep -q "downloading finch-test/tiny-llama/model-00002-of-00003.safetensors" "$work/train.log" || { cat "$work/train.log" >&2; fail "no download shown"; }
[ -f "$work/run/adapter_model.safetensors" ] || fail "the run wrote no adapter"
# finch serve loads an adapter by Hub id at run time (POST /v1/adapters), downloading it, and serves it.
sport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FINCH" serve --model finch-test/tiny-llama --port "$sport" > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$sport/health" >/dev/null && break; sleep 0.1; done
code=$(curl -s -o "$work/adapter.json" -w '%{http_code}' "http://127.0.0.1:$sport/v1/adapters" -d '{"name": "lora", "path": "finch-test/tiny-llama-lora"}')
[ "$code" = 201 ] || { cat "$work/adapter.json" "$work/serve.log" >&2; kill $serve; fail "POST /v1/adapters with a Hub id: HTTP $code"; }
code=$(curl -s -o "$work/completion.json" -w '%{http_code}' "http://127.0.0.1:$sport/v1/completions" -d '{"model": "lora", "prompt": "Hello", "max_tokens": 4}')
kill $serve; wait $serve 2>/dev/null || true
[ "$code" = 200 ] || { cat "$work/completion.json" >&2; fail "a completion with the Hub adapter: HTTP $code"; }
grep -q "downloading finch-test/tiny-llama-lora/adapter_model.safetensors" "$work/serve.log" || { cat "$work/serve.log" >&2; fail "the server did not download the adapter"; }
gen=(generate --model finch-test/tiny-llama --adapter finch-test/tiny-llama-lora --max-new-tokens 6 "Who is the mayor of Brindlewick?")
online=$("$FINCH" "${gen[@]}" 2>"$work/gen.log") || { cat "$work/gen.log" >&2; fail "generate with a Hub adapter failed"; }

kill $hub; wait $hub 2>/dev/null || true
offline=$(HF_HUB_OFFLINE=1 "$FINCH" "${gen[@]}" 2>"$work/offline.log") || { cat "$work/offline.log" >&2; fail "HF_HUB_OFFLINE=1 failed"; }
[ "$offline" = "$online" ] || fail "offline output differs: '$offline' vs '$online'"
grep -q downloading "$work/offline.log" && fail "HF_HUB_OFFLINE=1 downloaded"
unreachable=$("$FINCH" "${gen[@]}" 2>"$work/unreachable.log") || { cat "$work/unreachable.log" >&2; fail "the cache was not used with the Hub gone"; }
[ "$unreachable" = "$online" ] || fail "output with the Hub gone differs"
grep -q "using the cached finch-test/tiny-llama" "$work/unreachable.log" || { cat "$work/unreachable.log" >&2; fail "no notice that the cache was used"; }
HF_HUB_OFFLINE=1 "$FINCH" generate --model finch-test/never-downloaded "x" > /dev/null 2>"$work/missing.log" && fail "an uncached id offline should fail"
grep -q "HF_HUB_OFFLINE" "$work/missing.log" || { cat "$work/missing.log" >&2; fail "the error does not name HF_HUB_OFFLINE"; }

HF_HUB_OFFLINE=1 "$venv/bin/python" - "$HF_HOME/hub" <<'PY'
import hashlib, json, os, sys
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
cache = sys.argv[1]
problems = []
for rid, folder, files in [("finch-test/tiny-llama", "Tests/Fixtures/tiny-llama/hf", None),
                           ("finch-test/tiny-llama-lora", "Tests/Fixtures/tiny-llama/peft-trained/trained", None)]:
    snap = snapshot_download(rid, cache_dir=cache)
    for name in sorted(os.listdir(folder)):
        p = hf_hub_download(rid, name, cache_dir=cache, local_files_only=True)
        if os.path.dirname(p) != snap:
            problems.append(f"{rid}/{name}: {p} not in {snap}")
        with open(p, "rb") as a, open(os.path.join(folder, name), "rb") as b:
            if a.read() != b.read():
                problems.append(f"{rid}/{name}: bytes differ")
info = scan_cache_dir(cache)
problems += [f"scan_cache_dir: {w}" for w in info.warnings]
repos = sorted((r.repo_id, r.nb_files, r.size_on_disk) for r in info.repos)
print(json.dumps({"check": "hub_cache_read_by_huggingface_hub", "repos": repos, "problems": problems}))
sys.exit(1 if problems or len(repos) != 2 else 0)
PY
echo "hub_check: a Hub id downloaded, trained, served from the cache offline and with the Hub gone; huggingface_hub reads Finch's cache" >&2
