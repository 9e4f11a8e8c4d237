"""The release workflow is checked here, since only Linux can run it on this machine.

actionlint (with shellcheck for the `run:` scripts) catches expression, context, runner-label
and action-input mistakes; the structural checks below pin what issue 9 asks the workflow to do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _tool(name: str) -> str:
    """A dev-extra tool: next to this Python (the venv), else on PATH; missing is a failure."""
    for candidate in (
        Path(sys.executable).with_name(name),
        Path(sys.executable).with_name(name + ".exe"),
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the dev extra (scripts/bootstrap.sh)")
    return found


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _tool("actionlint"),
            "-no-color",
            "-oneline",
            "-shellcheck",
            _tool("shellcheck"),
            "-pyflakes",
            "",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_actionlint_passes_on_the_release_workflow() -> None:
    result = _actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mistake", "replace", "with_", "expected"),
    [
        ("an unknown runner label", "os: macos-14", "os: macos-13", 'label "macos-13" is unknown'),
        ("a matrix key that does not exist", "matrix.cmake_args", "matrix.cmake_arg", "cmake_arg"),
        (
            "an unquoted variable in a script",
            'cp "dist/cortensor-desktop$EXE"',
            "cp dist/$EXE",
            "SC2086",
        ),
    ],
)
def test_actionlint_catches_mistakes_in_a_copy(
    tmp_path: Path, mistake: str, replace: str, with_: str, expected: str
) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert replace in text, f"the workflow changed; update this test's {mistake!r} case"
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(replace, with_, 1), encoding="utf-8")
    result = _actionlint(broken)
    assert result.returncode != 0, f"actionlint missed {mistake}"
    assert expected in result.stdout, result.stdout


def _workflow() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return document


def test_matrix_covers_linux_windows_and_both_macs() -> None:
    build = _workflow()["jobs"]["build"]
    targets = {entry["name"]: entry["os"] for entry in build["strategy"]["matrix"]["include"]}
    assert set(targets) == {"linux-x86_64", "windows-x86_64", "macos-arm64", "macos-x86_64"}
    assert targets["macos-arm64"] == "macos-14"
    assert targets["windows-x86_64"].startswith("windows")
    assert build["defaults"]["run"]["shell"] == "bash"
    for entry in build["strategy"]["matrix"]["include"]:
        # never a -march=native llama.cpp in a download
        assert "-DGGML_NATIVE=OFF" in entry["cmake_args"], entry


def test_each_build_runs_the_binary_and_publishes_checksums() -> None:
    workflow = _workflow()
    steps = workflow["jobs"]["build"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert "packaging/build.sh" in scripts
    assert "--version" in scripts
    assert "--self-test --json" in scripts
    assert "CORTENSOR_HOME" in scripts
    assert "sha256" in scripts
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in steps)
    # the llama.cpp wheel is compiled once per OS and reused (cache + the locked install, which
    # takes llama-cpp-python from the wheelhouse only)
    assert any(step.get("uses", "").startswith("actions/cache@") for step in steps)
    assert 'scripts/install_locked.sh "$py" wheelhouse' in scripts
    release = workflow["jobs"]["release"]
    assert release["needs"] == "build"
    assert "refs/tags/v" in release["if"]
    assert release["permissions"] == {"contents": "write"}
    assert "SHA256SUMS" in "\n".join(step.get("run", "") for step in release["steps"])
