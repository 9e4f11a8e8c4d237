#!/usr/bin/env bash
# Build cortensor-desktop for this platform with PyInstaller:
#   dist/cortensor-desktop[.exe]                          one file, for downloads
#   dist/cortensor-desktop-folder/cortensor-desktop[.exe] one folder, starts faster
# then print each binary's size and its start-up time to `--version` (median of 3 runs).
#
# Environment:
#   CORTENSOR_VENV            the virtual environment to build from (default: .venv at the repo
#                             root, created by scripts/bootstrap.sh when missing)
#   CORTENSOR_BUILD_VARIANTS  "onefile onedir" (default), or just one of them
#   CORTENSOR_BUILD_CLEAN=1   drop PyInstaller's cache first
#
# The llama.cpp inside the binary is the one installed in the venv: the portable wheel that
# scripts/bootstrap.sh builds once (GGML_NATIVE=OFF) and keeps in its wheelhouse.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${CORTENSOR_VENV:-$ROOT/.venv}"
VARIANTS="${CORTENSOR_BUILD_VARIANTS:-onefile onedir}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for variant in $VARIANTS; do
  case "$variant" in
    onefile|onedir) ;;
    *) die "unknown variant '$variant' in CORTENSOR_BUILD_VARIANTS (onefile, onedir)" ;;
  esac
done

venv_python() {
  for candidate in "$VENV/bin/python" "$VENV/Scripts/python.exe"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

if ! PY="$(venv_python)"; then
  [ -z "${CORTENSOR_VENV:-}" ] || die "CORTENSOR_VENV=$VENV has no Python"
  say "no .venv yet: running scripts/bootstrap.sh first"
  scripts/bootstrap.sh
  PY="$(venv_python)" || die "scripts/bootstrap.sh did not create $VENV"
fi

if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
  die "PyInstaller is not installed in $VENV; install it with
  $PY -m pip install 'pyinstaller>=6.22,<7'   (it is in the dev extra: pip install -e '.[dev]')"
fi
"$PY" -c 'import llama_cpp, cortensor_desktop' 2>/dev/null ||
  die "$VENV lacks llama_cpp or cortensor_desktop: run scripts/bootstrap.sh"

EXE_SUFFIX=""
case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) EXE_SUFFIX=".exe" ;; esac

for variant in $VARIANTS; do
  case "$variant" in
    onefile) binary="dist/cortensor-desktop$EXE_SUFFIX" ;;
    onedir)  binary="dist/cortensor-desktop-folder/cortensor-desktop$EXE_SUFFIX" ;;
  esac
  work="build/pyinstaller-$variant"
  mkdir -p "$work"
  log="$work/build.log"
  clean=()
  [ "${CORTENSOR_BUILD_CLEAN:-0}" = "1" ] && clean=(--clean)
  say "building $variant with PyInstaller (log: $log)"
  start=$SECONDS
  if ! CORTENSOR_BUILD_VARIANT="$variant" "$PY" -m PyInstaller --noconfirm ${clean[@]+"${clean[@]}"} \
      --distpath dist --workpath "$work" --log-level WARN \
      packaging/cortensor-desktop.spec >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "PyInstaller failed for $variant; full log: $log"
  fi
  [ -x "$binary" ] || die "PyInstaller finished but $binary is missing"
  say "$variant built in $((SECONDS - start))s: $binary"
  # Size (the whole folder for onedir) and start-up time, measured the same way on every OS.
  "$PY" - "$binary" "$variant" <<'EOF'
import os, statistics, subprocess, sys, time
binary, variant = sys.argv[1], sys.argv[2]
root = binary if variant == "onefile" else os.path.dirname(binary)
if os.path.isfile(root):
    size = os.path.getsize(root)
else:
    # lstat: PyInstaller links some libraries inside the folder; count them once
    size = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(root) for f in fs)
times = []
for _ in range(3):
    start = time.perf_counter()
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=120)
    times.append(time.perf_counter() - start)
    if proc.returncode != 0:
        sys.exit(f"error: {binary} --version exited {proc.returncode}: {proc.stderr.strip()}")
print(f"{variant}: {root}: {size / 2**20:.1f} MiB; {proc.stdout.strip()}; "
      f"start-up to --version: median {statistics.median(times):.2f}s of 3")
EOF
done
