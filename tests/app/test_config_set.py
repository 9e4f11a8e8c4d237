"""`config set`: the same one-key edit the Settings screen makes, from the command line."""

from __future__ import annotations

import json
from pathlib import Path


def test_config_set_writes_one_key_and_keeps_the_comments(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("config", "init").returncode == 0
    result = cli("config", "set", "fit.ctx", "4096", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["value"] == 4096
    text = (home / "config" / "config.toml").read_text(encoding="utf-8")
    assert "\nctx = 4096\n" in text and "# Override: context size" in text
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["config"]["fit"]["ctx"] == 4096


def test_config_set_refuses_a_bad_value_in_one_line_with_exit_3(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", "set", "inference.threads", "-1")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "cortensor-desktop: error: key 'inference.threads': expected at least 0, got -1"
    ]
    assert not (home / "config" / "config.toml").exists()
    unknown = cli("config", "set", "fit.nope", "1")
    assert unknown.returncode == 3 and "unknown key 'fit.nope'" in unknown.stderr
