"""The systemd template and the scrape config say what the code does (exit codes, env names)."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from cortensor_desktop.cli.exit_codes import ExitCode
from cortensor_desktop.config import RESERVED_ENV

PACKAGING = Path(__file__).parents[2] / "packaging"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PACKAGING / "systemd" / "cortensor-desktop@.service")
    return parser


def test_unit_stops_restarting_on_usage_config_and_wallet_errors() -> None:
    service = _unit()["Service"]
    codes = {int(c) for c in service["RestartPreventExitStatus"].split()}
    # 7 (this machine cannot run the model) cannot be fixed by a restart either.
    assert codes == {ExitCode.USAGE, ExitCode.CONFIG, ExitCode.WALLET, ExitCode.DOES_NOT_FIT}
    assert service["ExecStart"].endswith("cortensor-desktop run --headless")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_unit_passes_the_passphrase_as_a_credential_and_is_hardened() -> None:
    text = (PACKAGING / "systemd" / "cortensor-desktop@.service").read_text()
    assert "LoadCredential=passphrase:" in text
    assert "Environment=CORTENSOR_PASSPHRASE_FILE=%d/passphrase" in text
    assert "Environment=CORTENSOR_HOME=%S/cortensor-desktop/%i" in text
    assert {"CORTENSOR_HOME", "CORTENSOR_PASSPHRASE_FILE"} <= RESERVED_ENV
    for line in ("NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes"):
        assert line in text
    assert "StateDirectory=cortensor-desktop/%i" in text  # the only writable place


def test_scrape_config_targets_the_metrics_path() -> None:
    document = yaml.safe_load((PACKAGING / "prometheus" / "scrape.yml").read_text())
    job = document["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert all(t.startswith("127.0.0.1:") for c in job["static_configs"] for t in c["targets"])
