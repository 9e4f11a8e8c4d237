"""Probe time, cold (new process, empty cache) and warm (new process, cache present).

Each run is a fresh interpreter that imports the probe and probes with the home database as
its cache (engine.state.database.Database, as the app does); the time is measured inside it, from
before the imports to the returned Hardware. Warm must stay under 300 ms (the median of 5);
exit 1 otherwise. Headline on the last line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.300

CHILD = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path
from engine.state.database import Database
from profiler.probe import probe
db = Database(Path(sys.argv[1]))
hw = probe(cache=db, models_dir=Path(sys.argv[2]))
elapsed = time.perf_counter() - start
db.close()
print(json.dumps({"elapsed": elapsed, "source": hw.source}))
"""


def run(db: Path, models: Path) -> tuple[float, str, float]:
    wall = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(models)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    wall = time.perf_counter() - wall
    if proc.returncode != 0:
        raise SystemExit(f"probe speed: the probe failed: {proc.stderr.strip()[-800:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(doc["elapsed"]), str(doc["source"]), wall


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db, models = Path(tmp) / "cortensor.db", Path(tmp) / "models"
        cold, source, cold_wall = run(db, models)
        print(f"cold: {cold * 1000:7.1f} ms in process ({cold_wall * 1000:.0f} ms wall), {source}")
        warm_runs = []
        for i in range(5):
            warm, source, wall = run(db, models)
            if source != "cache":
                print(f"warm run {i}: the cache was not used (source {source})")
                return 1
            warm_runs.append(warm)
            print(f"warm: {warm * 1000:7.1f} ms in process ({wall * 1000:.0f} ms wall), {source}")
    median = statistics.median(warm_runs)
    ok = median < TARGET_S
    print(
        f"probe speed: cold {cold * 1000:.0f} ms, warm {median * 1000:.0f} ms median "
        f"(target < {TARGET_S * 1000:.0f} ms): {'pass' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
