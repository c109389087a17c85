"""Raw result lines for the benchmark scripts: every figure in the README and docs/benchmarks.md comes from a line one of
these wrote, never from a hand edit.

  rawline.py machine FILE [--venv DIR] [KEY=VALUE...]
                                         append the machine line: commit, date, CPU model, vendor,
                                         ISA flags, cores, threads (OMP_NUM_THREADS), OPENBLAS_CORETYPE,
                                         Finch's bf16 path, the versions of the reference tools in the
                                         venv (torch, transformers, peft, trl, bitsandbytes, llama-cpp-python)
                                         and the given keys
  rawline.py quiet [--seconds S] [--max-busy F] [--out FILE] [KEY=VALUE...]
                                         check that the machine is quiet: the share of CPU time
                                         spent by all processes over S seconds (default 3) must be
                                         below F (default 0.10) of all cores; prints a JSON line (and
                                         appends it to FILE), exits 1 when busy (FINCH_BENCH_ALLOW_BUSY=1
                                         to go on: the line then says "allowed_busy": true)
  rawline.py tag FILE KEY=VALUE...       read JSON lines on stdin, add the keys (values parsed as
                                         JSON when they parse), append each to FILE and print it
  rawline.py rows FILE RUN               print the lines of FILE whose "run" is RUN (a script's
                                         summary reads its own lines back with this)
"""
import json, os, subprocess, sys, time, datetime

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def commit():
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "Package.swift"]).returncode != 0
    return sha + ("+" if dirty else "")


def cpuinfo():
    fields = {}
    for line in open("/proc/cpuinfo"):
        if not line.strip():
            break
        k, _, v = line.partition(":")
        fields[k.strip()] = v.strip()
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                       "amx_tile", "amx_bf16", "amx_int8"] if f in flags]
    return fields.get("model name", "unknown"), fields.get("vendor_id", "unknown"), isa


def versions(venv):
    if not venv:
        return {}
    code = ("import importlib.metadata as m, json\n"
            "out = {}\n"
            "for p in ['torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'accelerate', 'llama_cpp_python', 'gguf', 'numpy', 'lm_eval']:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    r = subprocess.run([os.path.join(venv, "bin", "python"), "-c", code], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()[-200:]}


def finch_bf16_path(vendor, isa):
    # GEMM.bf16Compute(vendor:features:) in Sources/FinchCore/GEMM.swift; FINCH_BF16_COMPUTE overrides.
    if os.environ.get("FINCH_BF16_COMPUTE") in ("native", "f32"):
        return os.environ["FINCH_BF16_COMPUTE"]
    if "amx_bf16" in isa or ("avx512_bf16" in isa and vendor == "AuthenticAMD"):
        return "native"
    return "f32"


def cpu_times():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = list(map(int, parts))
    idle = v[3] + v[4]
    return sum(v), idle


def quiet(seconds=3.0, max_busy=0.10):
    t0, i0 = cpu_times()
    time.sleep(seconds)
    t1, i1 = cpu_times()
    busy = 1 - (i1 - i0) / max(1, t1 - t0)
    ok = busy < max_busy
    return {"check": "quiet machine", "busy_share": round(busy, 3), "seconds": seconds, "max_busy": max_busy, "ok": ok}


def keyvalues(args):
    extra = {}
    for kv in args:
        k, _, v = kv.partition("=")
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    return extra


def options(args, names):
    """Splits --name VALUE options (names) from KEY=VALUE arguments."""
    opts, rest, i = {}, [], 0
    while i < len(args):
        if args[i] in names:
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    return opts, keyvalues(rest)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "machine":
        out = sys.argv[2]
        opts, extra = options(sys.argv[3:], ["--venv"])
        model, vendor, isa = cpuinfo()
        line = {"machine": True, "commit": commit(), "date": now(),
                "cpu": model, "vendor": vendor, "isa": isa, "cores": os.cpu_count(),
                "threads": os.environ.get("OMP_NUM_THREADS", "unset (all cores)"),
                "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"),
                "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
                "finch_bf16_compute": finch_bf16_path(vendor, isa), "versions": versions(opts.get("--venv"))}
        line.update(extra)
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line))
    elif cmd == "quiet":
        opts, extra = options(sys.argv[2:], ["--seconds", "--max-busy", "--out"])
        r = quiet(float(opts.get("--seconds", 3.0)), float(opts.get("--max-busy", 0.10)))
        r["date"] = now()
        if not r["ok"] and os.environ.get("FINCH_BENCH_ALLOW_BUSY") == "1":
            r["allowed_busy"] = True
        r.update(extra)
        print(json.dumps(r))
        if "--out" in opts:
            with open(opts["--out"], "a") as f:
                f.write(json.dumps(r) + "\n")
        if not r["ok"] and os.environ.get("FINCH_BENCH_ALLOW_BUSY") != "1":
            sys.exit(f"the machine is busy ({r['busy_share']:.0%} of the cores): benchmark on a quiet machine "
                     "(or FINCH_BENCH_ALLOW_BUSY=1, and say so with the figures)")
    elif cmd == "tag":
        out = sys.argv[2]
        extra = keyvalues(sys.argv[3:])
        with open(out, "a") as f:
            for line in sys.stdin:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                row.update(extra)
                f.write(json.dumps(row, sort_keys=True) + "\n")
                print(json.dumps(row, sort_keys=True))
    elif cmd == "rows":
        for line in open(sys.argv[2]):
            if line.startswith("{") and json.loads(line).get("run") == sys.argv[3]:
                print(line.strip())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
