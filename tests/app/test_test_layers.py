"""Every test folder runs in CI: scripts/run_tests.sh lists each one as a layer with a budget.

A new folder that is not listed would be skipped silently by the layer-by-layer runner.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_folder_is_a_layer_with_a_budget() -> None:
    script = (REPO / "scripts" / "run_tests.sh").read_text(encoding="utf-8")
    layers = dict(re.findall(r'^\s*"(tests/[\w/]+):(\d+)"$', script, flags=re.M))
    folders = {
        str(path.parent.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if path.parent != REPO / "tests"
    }
    top = {"/".join(f.split("/")[:2]) for f in folders}
    missing = sorted(top - set(layers))
    assert not missing, f"test folders scripts/run_tests.sh never runs: {missing}"
    assert all(int(budget) > 0 for budget in layers.values())
