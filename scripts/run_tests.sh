#!/usr/bin/env bash
# Run the test suite layer by layer, each under its own time budget, then print one total line.
# Budgets (seconds) keep the whole run well inside CI's 90 minutes on 2 cores; a layer that
# overruns fails instead of eating the others' time. With arguments, runs plain pytest instead.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python

if [ $# -gt 0 ]; then exec "$PY" -m pytest "$@"; fi

# layer folder : budget in seconds (order: cheap and foundational first)
LAYERS=(
  "tests/app:600"
  "tests/profiler:300"
  "tests/chain:1200"
  "tests/engine:1200"
  "tests/node:2400"
  "tests/ui:900"
  "tests/headless:900"
  "tests/router:900"
  "tests/packaging:900"
)

passed=0; failed=0; skipped=0; errors=0; status=0
for entry in "${LAYERS[@]}"; do
  folder="${entry%%:*}"; budget="${entry##*:}"
  [ -d "$folder" ] || continue
  compgen -G "$folder/**/test_*.py" >/dev/null || compgen -G "$folder/test_*.py" >/dev/null || continue
  printf '\n==> %s (budget %ss)\n' "$folder" "$budget"
  log="$(mktemp)"
  start=$SECONDS
  timeout --kill-after=30 "$budget" "$PY" -m pytest "$folder" -q -p no:cacheprovider 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  printf '==> %s took %ss (rc %s)\n' "$folder" "$((SECONDS - start))" "$rc"
  summary="$(grep -E '^=*.*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$log" | tail -n 1)"
  for kind in passed failed skipped error; do
    n="$(grep -oE "[0-9]+ $kind" <<<"$summary" | grep -oE '^[0-9]+' || true)"
    case "$kind" in
      passed) passed=$((passed + ${n:-0})) ;; failed) failed=$((failed + ${n:-0})) ;;
      skipped) skipped=$((skipped + ${n:-0})) ;; error) errors=$((errors + ${n:-0})) ;;
    esac
  done
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "==> $folder ran past its budget of ${budget}s" >&2; failed=$((failed + 1)); status=1
  elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    status=1
  fi
  rm -f "$log"
done
failed=$((failed + errors))
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$passed" -gt 0 ] || { echo "no test ran" >&2; exit 1; }
exit "$status"
