#!/usr/bin/env bash
# Regenerate requirements.lock: every third-party package the app and its dev tools install,
# pinned with sha256 hashes for every platform the release builds on. llama-cpp-python is left
# out: it is compiled here into a wheel of our own (its hash is ours, not PyPI's); its own
# dependencies are in the lock. Run after changing dependencies in pyproject.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv
"$PY" -m uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
  --python-version 3.11 --prerelease allow --no-emit-package llama-cpp-python \
  --custom-compile-command "scripts/lock.sh" -o requirements.lock
