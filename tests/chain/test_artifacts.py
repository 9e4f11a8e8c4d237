"""The committed artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from chain.artifacts import ARTIFACTS_DIR, NETWORK_CONTRACTS

REPO = Path(__file__).resolve().parents[2]


def test_committed_artifacts_match_a_fresh_compile() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing (apt-get install nodejs npm)")
    if not (REPO / "node_modules" / "solc").is_dir():
        pytest.fail("npm package solc is missing (run npm ci)")
    proc = subprocess.run(
        [node, "scripts/compile_contracts.js", "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0.8.37" in proc.stdout and "cancun" in proc.stdout


def test_artifacts_fit_under_the_contract_size_limit() -> None:
    for name in NETWORK_CONTRACTS:
        artifact = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        size = (len(artifact["bytecode"]) - 2) // 2
        assert 0 < size < 24_576, f"{name}: {size} bytes"
        assert artifact["compiler"]["evmVersion"] == "cancun"
