"""The systemd unit, the launchd agent and the Prometheus sample: valid, and saying what we mean.

The exit codes a service manager must not restart on come from `ExitCode`, so a new code or a
changed meaning breaks this test instead of silently looping a broken node.
"""

from __future__ import annotations

import platform
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cortensor_desktop.cli.exit_codes import ExitCode

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "systemd" / "cortensor-desktop@.service"
PLIST = PACKAGING / "launchd" / "org.cortensor.desktop.plist"
SCRAPE = PACKAGING / "prometheus" / "scrape.yml"

# docs/ARCHITECTURE.md: "a service manager should stop restarting" on these.
DO_NOT_RESTART = {ExitCode.USAGE, ExitCode.CONFIG, ExitCode.WALLET, ExitCode.DOES_NOT_FIT}


def _unit_entries(text: str) -> dict[str, list[str]]:
    """[Section]Key -> values, in order (systemd keys may repeat, e.g. Environment)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


def test_systemd_unit_runs_one_headless_node_per_instance_home() -> None:
    unit = _unit_entries(UNIT.read_text(encoding="utf-8"))
    assert unit["Service.ExecStart"][0].endswith(" run --headless")
    environment = dict(v.split("=", 1) for v in unit["Service.Environment"])
    assert "%i" in environment["CORTENSOR_HOME"]
    assert environment["CORTENSOR_PASSPHRASE_FILE"] == "%d/passphrase"
    assert unit["Service.LoadCredential"][0].startswith("passphrase:")
    assert "%i" in unit["Service.LoadCredential"][0]
    prevented = {int(code) for code in unit["Service.RestartPreventExitStatus"][0].split()}
    assert prevented == {int(code) for code in DO_NOT_RESTART}
    assert unit["Service.Restart"] == ["on-failure"]


def test_systemd_unit_is_hardened() -> None:
    unit = _unit_entries(UNIT.read_text(encoding="utf-8"))
    assert unit["Service.NoNewPrivileges"] == ["yes"]
    assert unit["Service.PrivateTmp"] == ["yes"]
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.ProtectHome"][0] in ("yes", "read-only")
    # with ProtectSystem=strict the home must be writable: it lives in the StateDirectory
    assert "cortensor-desktop/%i" in unit["Service.StateDirectory"][0]
    assert unit["Service.User"] != ["root"]


@pytest.mark.skipif(
    platform.system() != "Linux" or shutil.which("systemd-analyze") is None,
    reason="systemd-analyze needs a Linux host with systemd installed",
)
@pytest.mark.parametrize("typo", [None, ("Restart=on-failure", "Restartt=on-failure")])
def test_systemd_analyze_verify_accepts_the_unit(
    tmp_path: Path, typo: tuple[str, str] | None
) -> None:
    text = UNIT.read_text(encoding="utf-8")
    # verify checks that ExecStart exists; the binary is not installed on a build machine
    text = text.replace("/usr/local/bin/cortensor-desktop", shutil.which("true") or "/bin/true")
    if typo is not None:
        text = text.replace(*typo)
    instance = tmp_path / "cortensor-desktop@node1.service"
    instance.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if str(instance) in line
    ]
    if typo is None:
        assert result.returncode == 0 and not complaints, complaints
    else:  # proves the check above can fail
        assert any("Unknown key" in line for line in complaints), result.stderr


def test_launchd_agent_runs_headless_and_restarts_only_after_failures() -> None:
    with PLIST.open("rb") as handle:
        agent = plistlib.load(handle)
    assert agent["Label"] == PLIST.stem
    assert agent["ProgramArguments"][-2:] == ["run", "--headless"]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert "CORTENSOR_PASSPHRASE_FILE" in agent["EnvironmentVariables"]
    assert agent["ThrottleInterval"] >= 10


def test_prometheus_sample_scrapes_metrics_on_loopback() -> None:
    config = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets and all(t.startswith("127.0.0.1:") for t in targets)
    assert job["file_sd_configs"][0]["files"]
