#!/usr/bin/env bash
# Speed of this build against an earlier one, in the same run on the same machine: SmolLM2-135M
# inference (prefill 512 / decode 128, f32 and bf16) and LoRA training steps (r=8 q/v f32, r=16
# all-linear bf16, B=4 × T=256), OLD and NEW alternating, ROUNDS rounds, each a fresh process.
#   Scripts/bench/bench_before_after.sh OLD_FINCH [NEW_FINCH] [ROUNDS]
# OLD_FINCH: a finch binary built from the earlier commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && swift build -c release --product finch)
#   Scripts/bench/bench_before_after.sh /tmp/old/.build/release/finch
# After a quiet-machine check, appends every line (with "build": old / new) to
# Scripts/results/bench/before-after-DATE.jsonl (FINCH_BENCH_OUT to override) and prints a table of
# medians and new/old ratios computed from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="$1"; NEW="${2:-.build/release/finch}"; ROUNDS="${3:-2}"
FINCH_BENCH_NO_BUILD=1; [ "$NEW" = .build/release/finch ] && FINCH_BENCH_NO_BUILD=0
FINCH_BENCH_NO_REF=1 source Scripts/bench/common.sh
bench_start before-after
CASES=("generate --dtype f32" "generate --dtype bf16" "train --targets qv --r 8" "train --targets all --r 16 --dtype bf16")
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    for build in old new; do
      bin="$OLD"; [ "$build" = new ] && bin="$NEW"
      # shellcheck disable=SC2086
      "$bin" bench $c | raw build="$build" side="$build" binary="$bin" case="$c" round="$round"
    done
  done
done
python3 Scripts/bench/summary.py "$OUT" "$RUN_ID" old tokens_per_s prefill512_tok_s decode128_tok_s peak_rss_mib
