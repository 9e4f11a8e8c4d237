"""The catalogue's pinning rule: a URL on a moving branch is pinned by sha256 or says why not."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from profiler.catalogue import moving_revision

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def check_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "catalogue_check", ROOT / "bench/catalogue_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_model(source: dict[str, Any], sha256: str | None) -> dict[str, Any]:
    raw = json.loads((ROOT / "assets/catalogue.json").read_text(encoding="utf-8"))
    quant = raw["models"][1]["quants"][0]
    quant["sha256"], quant["sources"] = sha256, [source]
    return raw


def test_moving_revision_tells_a_branch_from_a_commit() -> None:
    assert moving_revision("https://huggingface.co/a/b/resolve/main/x.gguf") == "main"
    assert moving_revision(f"https://huggingface.co/a/b/resolve/{COMMIT}/x.gguf") is None
    assert moving_revision("https://example.org/x.gguf") is None


def test_a_moving_branch_without_sha256_or_reason_is_a_problem() -> None:
    problems = check_module().problems
    url = "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/x.gguf"
    found = problems(one_model({"type": "url", "url": url}, None))
    assert any("moving branch 'main'" in line for line in found), found
    assert problems(one_model({"type": "url", "url": url}, "a" * 64)) == []
    assert problems(one_model({"type": "url", "url": url, "unpinned": "why"}, None)) == []
    pinned = url.replace("/main/", f"/{COMMIT}/")
    assert problems(one_model({"type": "url", "url": pinned}, None)) == []


def test_the_shipped_catalogue_passes_and_reports_its_pinning() -> None:
    result = subprocess.run(
        [sys.executable, "bench/catalogue_check.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
    assert "pinning:" in result.stdout and result.stdout.rstrip().endswith("0 problems")
