"""The summary table a benchmark script prints, computed from its own raw lines only.

    python3 Scripts/bench/summary.py FILE RUN [BASELINE_SIDE] [METRIC...]

Reads the lines of FILE whose "run" is RUN (written by `raw` in Scripts/bench/common.sh), groups the
measurement lines by "case" and "side", and prints, per configuration and metric, the median over
the rounds of each side, the ratio of every other side's median to BASELINE_SIDE's (default: the
side that is not finch/new/checked when there are two), the per-round ratios, and the numbers of the
raw lines (1-based, in FILE) the figures come from. The CPU, commit and quiet check of the run head
the table.
"""
import json, statistics, sys

path, run = sys.argv[1], sys.argv[2]
baseline = sys.argv[3] if len(sys.argv) > 3 else None
metrics = sys.argv[4:] or ["tokens_per_s", "prefill512_tok_s", "decode128_tok_s", "peak_rss_mib"]
rows = []
for n, line in enumerate(open(path), 1):
    if line.startswith("{"):
        r = json.loads(line)
        if r.get("run") == run:
            rows.append((n, r))
machine = next((r for _, r in rows if r.get("machine")), {})
quiet = next((r for _, r in rows if r.get("check") == "quiet machine"), {})
print(f"# {path}, run {run}: {machine.get('cpu')} ({machine.get('vendor')}, {', '.join(machine.get('isa', []))}), "
      f"{machine.get('cores')} cores, commit {machine.get('commit')}, Finch bf16 path {machine.get('finch_bf16_compute')}, "
      f"OPENBLAS_CORETYPE {machine.get('openblas_coretype')}, versions {json.dumps(machine.get('versions', {}))}")
print(f"# quiet check: busy {quiet.get('busy_share')} (ok {quiet.get('ok')}{', ALLOWED BUSY' if quiet.get('allowed_busy') else ''})")
meas = [(n, r) for n, r in rows if "side" in r and "case" in r]
sides = list(dict.fromkeys(r["side"] for _, r in meas))
if baseline is None:
    others = [s for s in sides if s not in ("finch", "new", "checked")]
    baseline = others[0] if others else sides[0]
print(f"| case | metric | " + " | ".join(f"{s} (median)" for s in sides) + " | " +
      " | ".join(f"{s}/{baseline}" for s in sides if s != baseline) + " | per round | raw lines |")
print("|" + "---|" * (3 + 2 * len(sides)))
for case in dict.fromkeys(r["case"] for _, r in meas):
    for m in metrics:
        by = {s: [(n, r) for n, r in meas if r["case"] == case and r["side"] == s and m in r] for s in sides}
        if not any(by.values()):
            continue
        med = {s: statistics.median(r[m] for _, r in v) if v else None for s, v in by.items()}
        ratios = []
        for s in sides:
            if s == baseline:
                continue
            ratios.append(f"{med[s] / med[baseline]:.2f}x" if med[s] and med[baseline] else "-")
        rounds = sorted({r.get("round") for v in by.values() for _, r in v})
        per = []
        for rd in rounds:
            vals = {s: next((r[m] for _, r in v if r.get("round") == rd), None) for s, v in by.items()}
            if vals.get(baseline):
                per.append(f"r{rd}: " + ", ".join(f"{vals[s] / vals[baseline]:.2f}" for s in sides if s != baseline and vals[s]))
        lines = ",".join(str(n) for v in by.values() for n, _ in v)
        print(f"| {case} | {m} | " + " | ".join("-" if med[s] is None else f"{med[s]:g}" for s in sides) + " | " +
              " | ".join(ratios) + f" | {'; '.join(per)} | {lines} |")
