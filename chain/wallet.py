"""The node's key, kept in a V3 keystore file (scrypt), mode 0600, one wallet per home.

Key material never leaves this module except as a LocalAccount (for signing) or through
`export_private_key`, which the CLI prints only after a confirmation. Error messages name files
and addresses, never keys or passphrases.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from chain.errors import WalletError

WALLET_FILE = "wallet.json"
# scrypt work factors: the standard cost for a real wallet (about 0.7 s and 256 MiB to unlock),
# a cheap one only for devnet accounts and tests, where many processes unlock keys.
STANDARD_SCRYPT_N = 2**18
DEVNET_SCRYPT_N = 2**12


@dataclass(frozen=True)
class WalletInfo:
    path: Path
    address: str


def wallet_path(keystore_dir: Path) -> Path:
    return keystore_dir / WALLET_FILE


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Write atomically with mode 0600 from the first byte (no window where others can read).

    The temporary file is a new one with a random name (mkstemp: O_CREAT|O_EXCL, 0600), so a
    file or link another user planted beside the target (`export --to /tmp/x`) is never
    written into; file and folder are fsynced before and after the rename, so a power cut
    leaves the old wallet or the new one, never an empty file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Windows cannot open a folder; its rename is durable enough there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encrypt(account: LocalAccount, passphrase: str, scrypt_n: int) -> dict[str, Any]:
    return dict(Account.encrypt(account.key, passphrase, kdf="scrypt", iterations=scrypt_n))


def _check_passphrase(passphrase: str) -> None:
    if not passphrase:
        raise WalletError("an empty passphrase is not allowed")


def create_wallet(
    keystore_dir: Path, passphrase: str, scrypt_n: int = STANDARD_SCRYPT_N
) -> WalletInfo:
    return _store(keystore_dir, Account.create(), passphrase, scrypt_n)


def import_private_key(
    keystore_dir: Path, private_key: str, passphrase: str, scrypt_n: int = STANDARD_SCRYPT_N
) -> WalletInfo:
    try:
        account: LocalAccount = Account.from_key(private_key.strip())
    except Exception:
        raise WalletError("that is not a valid private key (expected 64 hex digits)") from None
    return _store(keystore_dir, account, passphrase, scrypt_n)


def import_keystore(keystore_dir: Path, source: Path, passphrase: str) -> WalletInfo:
    """Adopt a V3 keystore written elsewhere (geth, ethers, a wallet export) as this wallet."""
    document = _read(source)
    account = _decrypt(document, passphrase, source)
    target = wallet_path(keystore_dir)
    refuse_overwrite(target)
    _write_private(target, document)
    return WalletInfo(target, str(account.address))


def _store(keystore_dir: Path, account: LocalAccount, passphrase: str, scrypt_n: int) -> WalletInfo:
    _check_passphrase(passphrase)
    target = wallet_path(keystore_dir)
    refuse_overwrite(target)
    _write_private(target, _encrypt(account, passphrase, scrypt_n))
    return WalletInfo(target, str(account.address))


def refuse_overwrite(target: Path) -> None:
    if target.exists():
        raise WalletError(f"a wallet already exists at {target}; move it away first")


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WalletError(f"no wallet at {path}: run `cortensor-desktop wallet new`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise WalletError(f"{path} is not a readable keystore: {type(exc).__name__}") from None
    if not isinstance(document, dict) or "crypto" not in {k.lower() for k in document}:
        raise WalletError(f"{path} is not a V3 keystore")
    return document


def _decrypt(document: dict[str, Any], passphrase: str, path: Path) -> LocalAccount:
    try:
        key = Account.decrypt(document, passphrase)
    except ValueError:
        raise WalletError(f"wrong passphrase for {path}") from None
    except Exception as exc:
        raise WalletError(f"{path}: cannot decrypt ({type(exc).__name__})") from None
    account: LocalAccount = Account.from_key(key)
    return account


def wallet_info(keystore_dir: Path) -> WalletInfo:
    """The address without unlocking (V3 keystores carry it in clear)."""
    path = wallet_path(keystore_dir)
    document = _read(path)
    address = document.get("address")
    if not isinstance(address, str):
        raise WalletError(f"{path} does not name its address")
    return WalletInfo(path, to_checksum_address("0x" + address.removeprefix("0x")))


def unlock(keystore_dir: Path, passphrase: str) -> LocalAccount:
    path = wallet_path(keystore_dir)
    return _decrypt(_read(path), passphrase, path)


def change_passphrase(
    keystore_dir: Path, old: str, new: str, scrypt_n: int = STANDARD_SCRYPT_N
) -> WalletInfo:
    _check_passphrase(new)
    path = wallet_path(keystore_dir)
    account = _decrypt(_read(path), old, path)
    _write_private(path, _encrypt(account, new, scrypt_n))
    return WalletInfo(path, str(account.address))


def export_private_key(keystore_dir: Path, passphrase: str) -> str:
    """The hex private key. Only for `wallet export`, after the user confirmed."""
    return "0x" + bytes(unlock(keystore_dir, passphrase).key).hex()


def export_keystore(keystore_dir: Path, passphrase: str, target: Path) -> WalletInfo:
    """Copy the encrypted keystore to `target` (mode 0600) once `passphrase` is shown to open it.

    The key stays encrypted: a backup that needs the passphrase, safer to make than printing the
    key. The passphrase check makes sure the backup is one its owner can still open.
    """
    path = wallet_path(keystore_dir)
    document = _read(path)
    account = _decrypt(document, passphrase, path)
    refuse_overwrite(target)
    _write_private(target, document)
    return WalletInfo(target, str(account.address))
