#!/usr/bin/env bash
# Everything Finch needs on a fresh Debian machine: system libraries, the default model, a release build.
#   Scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -e /usr/include/oneapi/dnnl/dnnl.h ] || need+=(libdnnl-dev)
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || need+=(libopenblas-dev)
# Open MPI for data-parallel training (mpirun; Finch loads libmpi at run time, so only runs under mpirun need it).
command -v mpirun >/dev/null || need+=(openmpi-bin)
command -v ip >/dev/null || need+=(iproute2)   # the two-host test's network namespaces
command -v curl >/dev/null || need+=(curl)       # the serving end-to-end check
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)   # venvs of the end-to-end check and the reference tools
command -v python3 >/dev/null || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
Scripts/fetch-model.sh smollm2-135m >/dev/null
Scripts/fetch-model.sh gemma3-270m >/dev/null
[ "${1:-}" = "--no-build" ] && exit 0
swift build -c release --product finch >&2
