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


def test_an_edit_keeps_multiline_arrays_inline_comments_and_dotted_keys(tmp_path: Path) -> None:
    import tomllib

    from cortensor_desktop.config import set_config_value

    path = tmp_path / "config.toml"
    original = (
        "# my node\n"
        "fit.ctx = 2048  # the laptop runs hot above this\n"
        "fit.threads = 1\n"
        "\n"
        "[policy]\n"
        "active_hours = [\n"
        '    "22:00-23:00",  # evenings\n'
        '    "01:00-06:00",\n'
        "]\n"
    )
    path.write_text(original, encoding="utf-8")
    set_config_value(path, "fit.ctx", "4096")
    text = path.read_text(encoding="utf-8")
    assert "fit.ctx = 4096  # the laptop runs hot above this\n" in text
    assert '    "22:00-23:00",  # evenings\n    "01:00-06:00",\n]' in text
    assert "fit.threads = 1\n" in text and text.startswith("# my node\n")
    assert tomllib.loads(text)["fit"]["ctx"] == 4096
    set_config_value(path, "policy.active_hours", '["20:00-21:00"]')
    assert tomllib.loads(path.read_text(encoding="utf-8"))["policy"]["active_hours"] == [
        "20:00-21:00"
    ]


def test_a_string_with_control_characters_is_escaped_not_written_raw(tmp_path: Path) -> None:
    import tomllib

    from cortensor_desktop.config import set_config_value

    path = tmp_path / "config.toml"
    path.write_text("[wallet]\n", encoding="utf-8")
    payout = "0x" + "ab" * 20
    set_config_value(path, "wallet.payout", payout)
    folder = str(tmp_path / 'my "models"\tdisk')
    set_config_value(path, "models.dir", folder)
    text = path.read_text(encoding="utf-8")
    assert "\t" not in text and tomllib.loads(text)["models"]["dir"] == folder
    assert tomllib.loads(text)["wallet"]["payout"] == payout
