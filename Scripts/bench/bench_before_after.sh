#!/usr/bin/env bash
# Speed of this build against an earlier one, in the same run on the same machine: SmolLM2-135M
# inference (prefill 512 / decode 128, f32 and bf16) and LoRA training steps (r=8 q/v f32, r=16
# all-linear bf16, B=4 × T=256), OLD and NEW alternating, ROUNDS rounds, each a fresh process.
#   Scripts/bench/bench_before_after.sh OLD_FINCH [NEW_FINCH] [ROUNDS]
# OLD_FINCH: a finch binary built from the earlier commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && swift build -c release --product finch)
#   Scripts/bench/bench_before_after.sh /tmp/old/.build/release/finch
# Prints JSON lines (with "build": old / new) and a table of medians and new/old ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="$1"; NEW="${2:-.build/release/finch}"; ROUNDS="${3:-2}"
[ "$NEW" = .build/release/finch ] && swift build -c release --product finch >&2
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
OUT="$(mktemp)"
CASES=("generate --dtype f32" "generate --dtype bf16" "train --targets qv --r 8" "train --targets all --r 16 --dtype bf16")
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    for build in old new; do
      bin="$OLD"; [ "$build" = new ] && bin="$NEW"
      # shellcheck disable=SC2086
      "$bin" bench $c | sed "s/^{/{\"build\": \"$build\", \"case\": \"$c\", \"round\": $round, /" | tee -a "$OUT"
    done
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| case | figure | old | new | new/old |")
print("|---|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    sample = next(r for r in rows if r["case"] == case)
    for k in [k for k in sample if k.endswith("_tok_s") or k == "tokens_per_s" or k == "peak_rss_mib"]:
        old = statistics.median(r[k] for r in rows if r["case"] == case and r["build"] == "old")
        new = statistics.median(r[k] for r in rows if r["case"] == case and r["build"] == "new")
        print(f"| {case} | {k} | {old:.1f} | {new:.1f} | {new / old:.3f} |")
PY
rm -f "$OUT"
