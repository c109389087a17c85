#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces finch-h0 / finch-h1 joined by a veth pair
# (10.77.0.1 / 10.77.0.2), mpirun in finch-h0 launching one rank on each through a launch agent
# that enters the other namespace instead of ssh, MPI traffic over TCP only (no shared memory).
# The run must equal one process with --grad-accum 2: every loss and the adapter file, to the bit.
#
#   sudo Scripts/checks/distributed/two_hosts.sh [FINCH]        (needs root: ip netns; iproute2, openmpi-bin)
set -euo pipefail
cd "$(dirname "$0")/../../.."
FINCH="$(realpath "${1:-.build/release/finch}")"
OUT="$(mktemp -d /tmp/finch-two-hosts-XXXXXX)"
H0=finch-h0; H1=finch-h1
cleanup() { ip netns del $H0 2>/dev/null || true; ip netns del $H1 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
cleanup; OUT="$(mktemp -d /tmp/finch-two-hosts-XXXXXX)"
ip netns add $H0; ip netns add $H1
ip link add finch-v0 type veth peer name finch-v1
ip link set finch-v0 netns $H0; ip link set finch-v1 netns $H1
ip -n $H0 addr add 10.77.0.1/24 dev finch-v0; ip -n $H1 addr add 10.77.0.2/24 dev finch-v1
for ns in $H0 $H1; do ip -n $ns link set lo up; done
ip -n $H0 link set finch-v0 up; ip -n $H1 link set finch-v1 up

# Open MPI's rsh launch agent: "AGENT [options] HOST COMMAND..." -> run COMMAND in HOST's namespace.
cat > "$OUT/agent.sh" <<'AGENT'
#!/usr/bin/env bash
while [[ "${1:-}" == -* ]]; do shift; done
host="$1"; shift
case "$host" in 10.77.0.1) ns=finch-h0 ;; 10.77.0.2) ns=finch-h1 ;; *) echo "agent: unknown host $host" >&2; exit 1 ;; esac
echo "$host $ns" >> "$(dirname "$0")/agent.log"
exec ip netns exec "$ns" sh -c "$*"
AGENT
chmod +x "$OUT/agent.sh"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$OUT/hosts"

common=(train --model "$PWD/Tests/Fixtures/tiny-llama/hf" --data "$PWD/Examples/brindlewick.jsonl" --batch-size 2 --max-steps 20
        --seed 1 --save-steps 0 --logging-steps 1 --learning-rate 1e-3)
OMP_NUM_THREADS=1 "$FINCH" "${common[@]}" --grad-accum 2 --output "$OUT/single" >/dev/null 2>&1
ip netns exec $H0 mpirun --allow-run-as-root --hostfile "$OUT/hosts" -np 2 --bind-to none -x OMP_NUM_THREADS=1 \
  --mca plm_rsh_agent "$OUT/agent.sh" --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_if_include 10.77.0.0/24 \
  "$FINCH" "${common[@]}" --grad-accum 1 --output "$OUT/two-hosts" > "$OUT/mpi.log" 2>&1 || { cat "$OUT/mpi.log" >&2; exit 1; }
grep -q "distributed: 2 ranks" "$OUT/mpi.log"
grep -q "10.77.0.2 finch-h1" "$OUT/agent.log"   # the second rank was started in the other namespace
python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
def losses(run): return [json.loads(l)["loss"] for l in open(f"{d}/{run}/metrics.jsonl") if '"lr"' in l]
a, b = losses("single"), losses("two-hosts")
same_adapter = open(f"{d}/single/adapter_model.safetensors", "rb").read() == open(f"{d}/two-hosts/adapter_model.safetensors", "rb").read()
ok = len(a) == 20 and a == b and same_adapter
print(json.dumps({"check": "two hosts (netns + veth, TCP) vs one process with grad_accum 2", "steps": len(a),
                  "losses_equal": a == b, "adapter_identical": same_adapter, "ok": ok}))
sys.exit(0 if ok else 1)
PY
