"""packaging/build.sh fails clearly before PyInstaller runs, and passes shellcheck."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build.sh"


def _build(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Each case must fail before PyInstaller starts: a short timeout says so if one does not."""
    env = {**os.environ, **env_extra}
    return subprocess.run(
        ["bash", str(BUILD)], cwd=REPO, env=env, capture_output=True, text=True, timeout=30
    )


def test_a_venv_without_pyinstaller_is_named_with_the_fix(tmp_path: Path) -> None:
    bare = tmp_path / "bare-venv"
    venv.EnvBuilder(with_pip=False).create(bare)
    result = _build({"CORTENSOR_VENV": str(bare)})
    assert result.returncode == 1
    assert "PyInstaller is not installed" in result.stderr
    assert "pip install" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_a_missing_venv_named_by_the_user_is_an_error_not_a_bootstrap(tmp_path: Path) -> None:
    result = _build({"CORTENSOR_VENV": str(tmp_path / "nowhere")})
    assert result.returncode == 1
    assert "has no Python" in result.stderr
    assert "bootstrap" not in result.stderr


def test_an_unknown_variant_is_refused_before_anything_is_built() -> None:
    result = _build({"CORTENSOR_VENV": sys.prefix, "CORTENSOR_BUILD_VARIANTS": "onefile zip"})
    assert result.returncode == 1
    assert "unknown variant 'zip'" in result.stderr


@pytest.mark.parametrize("script", ["packaging/build.sh"])
def test_shellcheck_passes(script: str) -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    if not shellcheck.exists():
        pytest.fail("shellcheck is not installed: install the dev extra (scripts/bootstrap.sh)")
    result = subprocess.run(
        [str(shellcheck), script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
