#!/usr/bin/env bash
# Set up glean-sr on a fresh Debian/Ubuntu machine: system packages the tests use, a virtual
# environment in .venv, PyTorch, and glean-sr with every optional extra.
#   GLEAN_SR_TORCH  the torch requirement to install first (default torch==2.13.0, CPU build here;
#                   on a CUDA machine use e.g. "torch" or a specific +cuXXX wheel)
#   GLEAN_SR_NO_APT=1  skip the system packages (they are only needed by the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium)  # headless Chromium renders the eval report in the tests
if [[ "${GLEAN_SR_NO_APT:-0}" != "1" ]] && command -v apt-get >/dev/null; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        SUDO=""
        [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first: a bare "torch" requirement would otherwise pull a multi-GB CUDA build
.venv/bin/python -m pip install -q "${GLEAN_SR_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[all,test]"
echo "glean-sr installed: $(.venv/bin/glean-sr --version)"
