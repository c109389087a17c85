"""Reads the metrics of a 1-rank and a 2-rank run (data_parallel_ranks.sh) and prints the measured
figures and a projection to more hosts. Usage: scale_projection.py R1_METRICS R2_METRICS"""
import json, os, platform, statistics, sys


def steps(path):
    rows = [json.loads(l) for l in open(path) if '"lr"' in l]
    return rows[2:]   # the first two steps warm the libraries up


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
one, two = steps(sys.argv[1]), steps(sys.argv[2])
res = {"cpu": cpu, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""), "threads_per_rank": 1}
for name, rows, ranks in (("1 rank", one, 1), ("2 ranks", two, 2)):
    sec = [r["seconds"] for r in rows]
    tok = sum(r["tokens"] for r in rows)
    entry = {"steps": len(rows), "tokens_per_s": tok / sum(sec), "step_p50_s": pct(sec, 50), "step_p95_s": pct(sec, 95)}
    if ranks > 1:
        comm = [r.get("comm_seconds", 0) for r in rows]
        entry.update({"comm_p50_s": pct(comm, 50), "comm_p95_s": pct(comm, 95), "grad_bytes_per_rank": rows[0].get("comm_bytes")})
    res[name] = entry
res["speedup_2_ranks"] = res["2 ranks"]["tokens_per_s"] / res["1 rank"]["tokens_per_s"]
print(json.dumps(res))

# Projection. Per step, each host computes what one rank computes here (t_compute = step p50 of
# 1 rank) and then sums its gradients: Finch's fixed-order sum (an all-to-all of chunks, each rank
# adding its chunk in rank order, then an all-gather of the sums) moves 2(H-1)/H·B bytes per
# host, as a ring all-reduce does, plus 2(H-1) messages per 4 Mi-value bucket (taken at 50 µs
# each on TCP). No overlap with backward is assumed (Finch does not overlap: the sum is ~1% of
# the step here).
t1 = res["1 rank"]["step_p50_s"]
B_smol = res["2 ranks"]["grad_bytes_per_rank"]
# 7B (LLaMA-7B shapes) r 16 all-linear: per layer 4·r·(4096+4096) + 3·r·(4096+11008), 32 layers, f32.
B_7b = 32 * (4 * 16 * 8192 + 3 * 16 * (4096 + 11008)) * 4
# Compute per step for 7B, scaled from SmolLM2 by parameters (the product FLOPs), same tokens per step.
t_7b = t1 * 6.74e9 / 1.35e8
latency = 50e-6
for model, B, t in (("SmolLM2-135M", B_smol, t1), ("7B r16 all-linear", B_7b, t_7b)):
    buckets = -(-B // (4 * 4 * 2**20))
    for gbit in (10, 100):
        bw = gbit * 1e9 / 8
        for hosts in (8, 64):
            comm = 2 * (hosts - 1) / hosts * B / bw + buckets * 2 * (hosts - 1) * latency
            print(json.dumps({"projection": model, "hosts": hosts, "link_gbit_s": gbit, "grad_MB": round(B / 1e6, 1),
                              "compute_s": round(t, 3), "comm_s": round(comm, 3),
                              "efficiency": round(t / (t + comm), 3)}))
