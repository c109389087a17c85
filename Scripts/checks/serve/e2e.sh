#!/usr/bin/env bash
# End-to-end checks of `finch serve` with real clients, on loopback:
#   - the `openai` Python package streams chats and completions, scores a prompt (echo + logprobs),
#     switches adapters and gets OpenAI's errors (openai_client_check.py);
#   - headless Chromium drives the chat page: streamed text, Stop, Clear, adapter switch, compare
#     mode, the conversation log (page_check.py chat; --screenshot FILE saves the page);
#   - headless Chromium rates three pairs on the human-evaluation page /eval (page_check.py eval);
#   - `finch judge --judge-url` judges two answer files with the server as its API, then again from its cache.
# Installs what it needs: Debian's chromium + chromium-driver, and a venv with openai + selenium
# under $FINCH_HOME/venvs (outside the repository).
#   Scripts/checks/serve/e2e.sh [--screenshot FILE [EVAL_FILE]]
set -euo pipefail
cd "$(dirname "$0")/../../.."
screenshot=""; eval_screenshot=""
[ "${1:-}" = "--screenshot" ] && screenshot="$2" && eval_screenshot="${3:-}"

FINCH=${FINCH:-.build/release/finch}
if [ ! -x "$FINCH" ]; then swift build -c release -Xswiftc -enable-testing --product finch >&2; fi

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
home=${FINCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/finch}
venv="$home/venvs/serve-e2e"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, selenium; assert openai.__version__ == '3.51.0' and selenium.__version__ == '4.51.0'" 2>/dev/null; then
  echo "e2e: making $venv (openai, selenium)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "openai==3.51.0" "selenium==4.51.0"
fi

peft=Tests/Fixtures/smollm2/peft   # PEFT's adapters (Scripts/fixtures/make_peft_goldens.py)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FINCH" serve --port "$port" --max-batch 16 --ctx 2048 \
  --adapter lora="$peft/lora_all_linear_r8" --adapter dora="$peft/dora_qv_r4" \
  --conversation-log "$work/conversations.jsonl" \
  --eval-answers base=Tests/Fixtures/eval/answers_base.jsonl --eval-answers tuned=Tests/Fixtures/eval/answers_tuned.jsonl \
  --eval-log "$work/ratings.jsonl" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "e2e: the server did not become ready" >&2; cat "$work/server.log" >&2; exit 1; }

"$venv/bin/python" Scripts/checks/serve/openai_client_check.py --base-url "http://127.0.0.1:$port/v1"
"$venv/bin/python" Scripts/checks/serve/page_check.py chat --url "http://127.0.0.1:$port/" \
  --log "$work/conversations.jsonl" ${screenshot:+--screenshot "$screenshot"}
"$venv/bin/python" Scripts/checks/serve/page_check.py eval --url "http://127.0.0.1:$port/eval" --log "$work/ratings.jsonl" \
  ${eval_screenshot:+--screenshot "$eval_screenshot"}
# `finch judge` with the server as its OpenAI-compatible API: 3 questions × 2 orders asked, then a
# rerun that reads every reply from the cache and writes the same judgements.
judge=(judge --judge-url "http://127.0.0.1:$port/v1" --judge-model smollm2-135m --max-new-tokens 32 --judge-cache "$work/judge-cache.jsonl"
       --answers base=Tests/Fixtures/eval/answers_base.jsonl --answers tuned=Tests/Fixtures/eval/answers_tuned.jsonl)
"$FINCH" "${judge[@]}" --output "$work/judged1.jsonl" > "$work/judge1.txt" 2>&1 || { cat "$work/judge1.txt" >&2; exit 1; }
grep -q "(explain mode), 6 asked, 0 from the cache" "$work/judge1.txt" || { echo "e2e: the API judge did not ask 6 cases" >&2; cat "$work/judge1.txt" >&2; exit 1; }
"$FINCH" "${judge[@]}" --output "$work/judged2.jsonl" > "$work/judge2.txt" 2>&1 || { cat "$work/judge2.txt" >&2; exit 1; }
grep -q "0 asked, 6 from the cache" "$work/judge2.txt" || { echo "e2e: the rerun did not read the cache" >&2; cat "$work/judge2.txt" >&2; exit 1; }
cmp -s "$work/judged1.jsonl" "$work/judged2.jsonl" || { echo "e2e: the rerun's judgements differ" >&2; exit 1; }
echo "e2e: finch judge over the server's API: 6 asked, then 6 from the cache" >&2
echo "e2e: all checks passed" >&2
