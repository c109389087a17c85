#!/usr/bin/env bash
# The long fuzzing campaign: every harness until it has run RUNS inputs or SECONDS have passed
# (the issue's bar: 10^6 executions or 30 minutes), LANES harnesses at a time, each on one core.
#   Scripts/hardening/fuzz_campaign.sh [LANES=2] [RUNS=1000000] [SECONDS=1800] [HARNESS...]
# (RUNS -1: no limit; CI runs every harness for 30 s this way, two at a time.)
# Appends one JSON line per harness to Scripts/results/fuzz/campaign-DATE.jsonl (or $FINCH_FUZZ_RESULTS): executions, seconds,
# exec/s, coverage, corpus size, peak memory, findings, the CPU and the commit. Exits non-zero on
# any finding (the input is in .build-fuzz/artifacts/, the log in .build-fuzz/NAME.log).
set -euo pipefail
cd "$(dirname "$0")/../.."
LANES="${1:-2}"; RUNS="${2:-1000000}"; SECS="${3:-1800}"
shift 3 || shift $#
HARNESSES="${*:-$(Scripts/hardening/fuzz.sh list)}"
Scripts/hardening/fuzz.sh build
OUT="${FINCH_FUZZ_RESULTS:-Scripts/results/fuzz/campaign-$(date -u +%Y-%m-%d).jsonl}"
mkdir -p "$(dirname "$OUT")"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Fuzz/Sources || echo +)"

one() {
  local n="$1" start end rc=0
  start=$(date +%s)
  FINCH_FUZZ_SKIP_BUILD=1 Scripts/hardening/fuzz.sh "$n" "$SECS" -runs="$RUNS" 2> ".build-fuzz/campaign-$n.out" || rc=$?
  end=$(date +%s)
  local line
  line=$(python3 - "$n" ".build-fuzz/$n.log" "$((end - start))" "$rc" "$CPU" "$COMMIT" "$RUNS" "$SECS" <<'PY'
import json, re, sys
name, log, secs, rc, cpu, commit, runs, limit = sys.argv[1:]
text = open(log, errors="replace").read()
stat = {k: int(v) for k, v in re.findall(r"stat::(\w+):\s+(\d+)", text)}
last = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", text)
cov, ft, corp, corp_size = (int(last[-1][1]), int(last[-1][2]), int(last[-1][3]), last[-1][4]) if last else (0, 0, 0, "0b")
print(json.dumps({"harness": name, "executions": stat.get("number_of_executed_units", 0), "seconds": int(secs),
                  "exec_per_s": stat.get("average_exec_per_sec", 0), "coverage": cov, "features": ft,
                  "corpus": corp, "corpus_size": corp_size, "new_units": stat.get("new_units_added", 0),
                  "peak_rss_mb": stat.get("peak_rss_mb", 0), "findings": 0 if rc == "0" else 1,
                  "limits": {"runs": int(runs), "seconds": int(limit)}, "cpu": cpu, "commit": commit}))
PY
)
  echo "$line" >> "$OUT"   # one short append per harness (lanes finish at any time)
  echo "$line" >&2
  return "$rc"
}

status=0
pids=()
for n in $HARNESSES; do
  while [ "$(jobs -rp | wc -l)" -ge "$LANES" ]; do wait -n || status=1; done
  one "$n" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || status=1; done
echo "results: $OUT" >&2
exit $status
