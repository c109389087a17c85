#!/usr/bin/env bash
# Raw lines for the figure (docs/models.md) "a Finch-trained adapter equals a PEFT-trained one": runs
# PEFTTrainedAdapterTests (Tests/FinchTrainTests; fixtures from Scripts/fixtures/make_trained_adapters.py)
# under each f32 product path Finch can take (oneDNN as dispatched, oneDNN held to AVX2, OpenBLAS),
# and appends the machine line and one line per family and path to
# Scripts/results/checks/peft-trained-adapters-<date>.jsonl.
#   Scripts/checks/training/peft_trained_adapters.sh           # builds the tests first
#   FINCH_SKIP_BUILD=1 Scripts/checks/training/peft_trained_adapters.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
out="Scripts/results/checks/peft-trained-adapters-$(date -u +%Y-%m-%d).jsonl"
mkdir -p "$(dirname "$out")"
[ "${FINCH_SKIP_BUILD:-0}" = 1 ] || swift build -c release -Xswiftc -enable-testing --build-tests >&2
python3 Scripts/bench/rawline.py machine "$out" >/dev/null
status=0
for path in "dnnl" "dnnl-avx2 ONEDNN_MAX_CPU_ISA=AVX2" "openblas FINCH_GEMM=openblas"; do
  name="${path%% *}"; vars="${path#"$name"}"
  log="$(env $vars swift test -c release -Xswiftc -enable-testing --skip-build --filter PEFTTrainedAdapterTests 2>&1)" || status=1
  grep -q "with 0 failures" <<<"$log" && passed=true || { passed=false; status=1; }
  sed -n 's/^\[peft-trained\] //p' <<<"$log" | python3 Scripts/bench/rawline.py tag "$out" \
    check=peft-trained-adapters gemm="$name" test_passed="$passed"
done
echo "appended to $out" >&2
exit $status
