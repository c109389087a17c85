#!/usr/bin/env bash
# `finch judge --judge-url` against llama.cpp's OpenAI-compatible server (llama-cpp-python's
# llama_cpp.server on SmolLM2's GGUF, the venv of Scripts/reference-venv.sh llama-cpp): every case is
# answered and read, a rerun comes wholly from the cache. Appends its raw lines (commit, CPU, versions,
# verdicts, seconds) to Scripts/results/checks/judge-api-DATE.jsonl. (`finch serve` as the API is checked in
# Scripts/checks/serve/e2e.sh and APIJudgeTests.) N_BATCH (default 1): llama-cpp-python 0.3.36 built here
# segfaulted reading prompts of more than one token in a batch on the Q4_1 file (an Intel Xeon, 2026-12-07).
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release -Xswiftc -enable-testing --product finch >&2
venv="$(Scripts/reference-venv.sh llama-cpp)"
model="$(Scripts/fetch-model.sh smollm2-135m | tail -1)"
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/python" -m llama_cpp.server --model "$model" --model_alias smollm2 --host 127.0.0.1 --port "$port" --n_ctx 4096 --n_batch "${N_BATCH:-1}" \
  > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null || { cat "$work/server.log" >&2; exit 1; }
judge=(judge --judge-url "http://127.0.0.1:$port/v1" --judge-model smollm2 --max-new-tokens 64 --judge-cache "$work/cache.jsonl"
       --answers base=Tests/Fixtures/eval/answers_base.jsonl --answers tuned=Tests/Fixtures/eval/answers_tuned.jsonl)
t0=$(date +%s.%N)
"$FINCH" "${judge[@]}" --output "$work/j1.jsonl" --summary "$work/s1.json" > "$work/out1.txt" 2>&1 || { cat "$work/out1.txt" >&2; exit 1; }
t1=$(date +%s.%N)
"$FINCH" "${judge[@]}" --output "$work/j2.jsonl" > "$work/out2.txt" 2>&1 || { cat "$work/out2.txt" >&2; exit 1; }
grep -q "6 asked, 0 from the cache" "$work/out1.txt" || { cat "$work/out1.txt" >&2; echo "judge_api_check: not 6 cases asked" >&2; exit 1; }
grep -q "0 asked, 6 from the cache" "$work/out2.txt" || { cat "$work/out2.txt" >&2; echo "judge_api_check: the rerun asked again" >&2; exit 1; }
cmp -s "$work/j1.jsonl" "$work/j2.jsonl" || { echo "judge_api_check: the rerun's judgements differ" >&2; exit 1; }
out="Scripts/results/checks/judge-api-$(date -u +%F).jsonl"
python3 - "$work/j1.jsonl" "$work/s1.json" "$(echo "$t1 - $t0" | bc)" "$("$venv/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')" >> "$out" <<'PY'
import json, os, platform, subprocess, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
summary = json.load(open(sys.argv[2]))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
empty = sum(1 for l in lines if not l["judge_output"].strip())
print(json.dumps({"check": "finch judge over llama.cpp's server (llama_cpp.server, SmolLM2 Q4_1 GGUF)", "judgements": len(lines),
                  "empty_replies": empty, "verdicts": [l["verdict"] for l in lines], "unreadable": summary["unreadable"],
                  "position_bias": summary["position_bias"], "rerun_from_cache": True, "seconds": float(sys.argv[3]),
                  "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
                  "cpu": cpu, "threads": os.cpu_count(), "llama_cpp_python": sys.argv[4],
                  "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}))
sys.exit(1 if empty or len(lines) != 6 else 0)
PY
tail -1 "$out"
echo "judge_api_check: finch judge over llama.cpp's server: 6 cases asked and read, the rerun from the cache ($out)" >&2
