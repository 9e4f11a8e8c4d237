"""Our keystores against another implementation (npm ethers): both directions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chain import wallet

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ethers_keystore.js")


def _ethers(mode: str, file: Path, passphrase: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing (apt-get install nodejs npm)")
    if not (REPO / "node_modules" / "ethers").is_dir():
        pytest.fail("npm package ethers is missing (run npm ci)")
    env = {**os.environ, "KEYSTORE_PASSPHRASE": passphrase}
    proc = subprocess.run(
        [node, str(SCRIPT), mode, str(file)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_keystore_written_by_the_app_decrypts_with_ethers(tmp_path: Path) -> None:
    info = wallet.create_wallet(tmp_path / "ks", "interop pass", wallet.DEVNET_SCRYPT_N)
    assert _ethers("decrypt", info.path, "interop pass") == info.address


def test_keystore_written_by_ethers_imports(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "ethers.json"
    address = _ethers("encrypt", source, "their pass")
    result = cli(
        "wallet",
        "import",
        "--keystore",
        str(source),
        "--json",
        env={"CORTENSOR_PASSPHRASE": "their pass"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["address"] == address
    wrong = cli("wallet", "import", "--keystore", str(source), env={"CORTENSOR_PASSPHRASE": "x"})
    assert wrong.returncode == 4
