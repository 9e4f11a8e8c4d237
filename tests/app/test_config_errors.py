"""Bad config gives one line naming file, key and what is expected; exit code 3; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortensor_desktop.config import ConfigError, default_config_text, load_config


def _write_config(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[network\nprofile = 'x'\n", "not valid TOML"),
        ("[network]\nprofile = 12\n", "key 'network.profile' (line 2): expected a string, got 12"),
        (
            "[network]\nprofile = 'embedded'\ncolour = 'red'\n",
            "key 'network.colour' (line 3): unknown key",
        ),
        ("[nope]\nx = 1\n", "key 'nope'"),
        ("[logging]\nlevel = 'loud'\n", "expected one of debug, info, warning, error"),
    ],
)
def test_bad_config_is_one_line_exit_3(cli, home: Path, text: str, expected: str) -> None:
    path = _write_config(home, text)
    result = cli("config", "show")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_env_override_names_the_variable(cli) -> None:
    result = cli("config", "show", env={"CORTENSOR_LOGGING__FILE_BACKUPS": "many"})
    assert result.returncode == 3
    assert "CORTENSOR_LOGGING__FILE_BACKUPS" in result.stderr


def test_reserved_env_names_are_not_config_keys(tmp_path: Path) -> None:
    loaded = load_config(
        tmp_path / "missing.toml", {"CORTENSOR_HOME": "/x", "CORTENSOR_PASSPHRASE": "secret-words"}
    )
    assert loaded.config.network.profile == "embedded"


def test_env_override_parses_typed_values(tmp_path: Path) -> None:
    loaded = load_config(tmp_path / "missing.toml", {"CORTENSOR_LOGGING__FILE_BACKUPS": "7"})
    assert loaded.config.logging.file_backups == 7


def test_default_config_text_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(default_config_text(), encoding="utf-8")
    assert load_config(path, {}).source == path


def test_range_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[logging]\nfile_backups = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected at least 0"):
        load_config(path, {})
