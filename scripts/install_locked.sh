#!/usr/bin/env bash
# Install the app into a virtualenv from the hashed lock: every third-party package checked
# against requirements.lock's sha256, llama-cpp-python from the wheelhouse (our own build), then
# the app itself without dependencies, then `pip check` so a stale lock fails here, not later.
#
#   scripts/install_locked.sh PYTHON WHEELHOUSE [--editable]
# Used by scripts/bootstrap.sh and the release workflow; fails on any failed install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="$1"; WHEELHOUSE="$2"; MODE="${3:-}"
LLAMA_VERSION="0.3.36"
quiet() { "$@" 2>&1 | { grep -v 'is ignored' || true; }; }  # pipefail keeps pip's status

quiet "$PY" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
  -r requirements.lock
quiet "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-index \
  --find-links "$WHEELHOUSE" --only-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION"
if [ "$MODE" = "--editable" ]; then
  quiet "$PY" -m pip install -q --disable-pip-version-check --no-deps -e .
else
  quiet "$PY" -m pip install -q --disable-pip-version-check --no-deps .
fi
"$PY" -m pip check
