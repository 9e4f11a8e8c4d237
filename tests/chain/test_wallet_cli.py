"""`wallet` through the real CLI in a subprocess; the key appears only where it is asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.chain


def _all_text(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in home.rglob("*.log") if p.is_file())


def test_wallet_lifecycle_never_leaks_the_key(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pp = tmp_path / "pp"
    pp.write_text("s3cret passphrase\n")
    new = cli("wallet", "new", "--passphrase-file", str(pp), "--cheap-kdf", "--json")
    assert new.returncode == 0, new.stderr
    doc = json.loads(new.stdout)
    assert doc["address"].startswith("0x") and doc["balance_wei"] is None
    assert "fresh each run" in doc["balance_note"]

    show = cli("wallet", "show", "--json")
    assert json.loads(show.stdout)["address"] == doc["address"]

    refused = cli("wallet", "export", "--passphrase-file", str(pp))
    assert refused.returncode == 4 and "--yes" in refused.stderr

    export = cli("wallet", "export", "--yes", "--json", env={"CORTENSOR_PASSPHRASE_FILE": str(pp)})
    assert export.returncode == 0, export.stderr
    key = json.loads(export.stdout)["private_key"]
    assert len(key) == 66

    wrong = cli("wallet", "export", "--yes", env={"CORTENSOR_PASSPHRASE": "wrong"})
    assert wrong.returncode == 4 and "wrong passphrase" in wrong.stderr
    for result in (new, show, refused, wrong):
        assert key[2:] not in result.stdout + result.stderr
    assert key[2:] not in _all_text(home)
    keystore_text = (home / "data" / "keystore" / "wallet.json").read_text()
    assert key[2:] not in keystore_text and "s3cret" not in keystore_text


def test_headless_without_passphrase_exits_4_with_instructions(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("wallet", "new", "--cheap-kdf", stdin="")
    assert result.returncode == 4
    assert "CORTENSOR_PASSPHRASE_FILE" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_import_key_from_stdin_and_passwd(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = "0x" + "4c" * 32
    env = {"CORTENSOR_PASSPHRASE": "first"}
    imported = cli(
        "wallet", "import", "--key-file", "-", "--cheap-kdf", "--json", env=env, stdin=key
    )
    assert imported.returncode == 0, imported.stderr
    assert key[2:] not in imported.stdout + imported.stderr
    new_pp = tmp_path / "new"
    new_pp.write_text("second")
    changed = cli("wallet", "passwd", "--new-passphrase-file", str(new_pp), "--cheap-kdf", env=env)
    assert changed.returncode == 0, changed.stderr
    export = cli("wallet", "export", "--yes", "--passphrase-file", str(new_pp))
    assert export.stdout.strip() == key


def test_show_without_wallet_is_exit_4(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("wallet", "show")
    assert result.returncode == 4 and "wallet new" in result.stderr


def test_export_to_a_path_writes_the_encrypted_keystore_0600(
    cli, home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pp = tmp_path / "pp"
    pp.write_text("s3cret passphrase\n")
    assert cli("wallet", "new", "--passphrase-file", str(pp), "--cheap-kdf").returncode == 0
    target = tmp_path / "backup.json"
    wrong = cli("wallet", "export", "--to", str(target), env={"CORTENSOR_PASSPHRASE": "wrong"})
    assert wrong.returncode == 4 and "wrong passphrase" in wrong.stderr
    assert not target.exists()
    done = cli("wallet", "export", "--to", str(target), "--passphrase-file", str(pp), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["keystore_copy"] == str(target)
    assert target.stat().st_mode & 0o777 == 0o600
    keystore = home / "data" / "keystore" / "wallet.json"
    assert json.loads(target.read_text()) == json.loads(keystore.read_text())
