#!/usr/bin/env bash
# Runs a libFuzzer harness over Finch's parsers:
#   Scripts/hardening/fuzz.sh NAME SECONDS [libFuzzer options...]
#   Scripts/hardening/fuzz.sh all SECONDS          # every harness, SECONDS each
#   Scripts/hardening/fuzz.sh build                # only build (FINCH_FUZZ_SKIP_BUILD=1 then skips it)
#   Scripts/hardening/fuzz.sh list                 # the harness names
# NAME: safetensors safetensors-index gguf tokenizer-json tokenize jinja config yaml dataset http
# Builds Fuzz/Sources (finch-fuzz) with -sanitize=fuzzer,address and Swift's checks on, in its own
# build directory (.build-fuzz). Seeds: Fuzz/corpus/NAME (committed); new inputs the fuzzer keeps
# go to .build-fuzz/corpus/NAME, crashes / leaks / timeouts to .build-fuzz/artifacts/. Prints
# libFuzzer's final stats (executions, exec/s); exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME="${1:?usage: Scripts/hardening/fuzz.sh NAME|all SECONDS [libFuzzer options]}"
SECS="${2:-60}"
shift 2 || shift $#
BUILD=.build-fuzz
HARNESSES="safetensors safetensors-index gguf tokenizer-json tokenize jinja config yaml dataset http"
[ "$NAME" = list ] && { echo "$HARNESSES"; exit 0; }
[ -n "${FINCH_FUZZ_SKIP_BUILD:-}" ] || FINCH_FUZZ=1 swift build -c release --build-path "$BUILD" --manifest-cache none --product finch-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing -Xswiftc -use-ld=lld >&2
BIN="$BUILD/release/finch-fuzz"
[ "$NAME" = build ] && exit 0
[ "$NAME" = all ] && NAMES="$HARNESSES" || NAMES="$NAME"
status=0
for n in $NAMES; do
  mkdir -p "$BUILD/corpus/$n" "$BUILD/artifacts"
  echo "== $n: ${SECS}s ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))" >&2
  if ! FINCH_FUZZ_TARGET="$n" FINCH_FUZZ_ROOT="$PWD" ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1" \
      "$BIN" "$BUILD/corpus/$n" "Fuzz/corpus/$n" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=4096 \
      -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$n-" "$@" \
      2> "$BUILD/$n.log"; then
    status=1
    echo "FINDING in $n (log $BUILD/$n.log):" >&2
    grep -E "ERROR|==.*==|SUMMARY|Fatal error|artifact" "$BUILD/$n.log" | head -20 >&2
  fi
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "$BUILD/$n.log" | tr '\n' ' ' >&2
  echo >&2
done
exit $status
