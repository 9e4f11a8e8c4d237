"""Keystore and passphrase sources, in process (keyring: an in-memory backend)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend

from chain import passphrase, wallet
from chain.errors import WalletError

CHEAP = wallet.DEVNET_SCRYPT_N


class InMemoryKeyring(KeyringBackend):
    """A secure-looking backend that keeps secrets in a dict (priority like a real store)."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


class PlaintextLike(InMemoryKeyring):
    """What keyrings.alt's plaintext backend looks like: recommended, but priority below 1."""

    priority = 0.5  # type: ignore[assignment]


@pytest.fixture
def in_memory_keyring() -> Iterator[InMemoryKeyring]:
    previous = keyring.get_keyring()
    backend = InMemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_new_wallet_is_private_and_unlocks(tmp_path: Path) -> None:
    info = wallet.create_wallet(tmp_path / "ks", "correct horse", CHEAP)
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.path.parent.stat().st_mode) == 0o700
    assert wallet.wallet_info(tmp_path / "ks").address == info.address
    assert wallet.unlock(tmp_path / "ks", "correct horse").address == info.address
    with pytest.raises(WalletError, match="already exists"):
        wallet.create_wallet(tmp_path / "ks", "again", CHEAP)


def test_wrong_passphrase_and_passwd(tmp_path: Path) -> None:
    info = wallet.create_wallet(tmp_path, "old", CHEAP)
    key = wallet.export_private_key(tmp_path, "old")
    with pytest.raises(WalletError, match="wrong passphrase") as caught:
        wallet.unlock(tmp_path, "nope")
    assert key[2:] not in str(caught.value)
    wallet.change_passphrase(tmp_path, "old", "new", CHEAP)
    assert wallet.unlock(tmp_path, "new").address == info.address
    with pytest.raises(WalletError):
        wallet.unlock(tmp_path, "old")
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600


def test_bad_private_key_import_does_not_echo_it(tmp_path: Path) -> None:
    secret = "zz" + "ab" * 31
    with pytest.raises(WalletError) as caught:
        wallet.import_private_key(tmp_path, secret, "pw", CHEAP)
    assert secret not in str(caught.value)


def test_passphrase_sources_in_order(tmp_path: Path, in_memory_keyring: InMemoryKeyring) -> None:
    file = tmp_path / "pp"
    file.write_text("from-file\n")
    env = {passphrase.VALUE_ENV: "from-env", passphrase.FILE_ENV: str(file)}
    in_memory_keyring.set_password(passphrase.KEYRING_SERVICE, "0xabc", "from-keyring")
    never = lambda: False  # noqa: E731 - headless

    assert passphrase.resolve(None, "0xABC", env, is_tty=never).source == "file"
    assert passphrase.resolve(None, "0xABC", {passphrase.VALUE_ENV: "x"}, is_tty=never).value == "x"
    got = passphrase.resolve(None, "0xABC", {}, is_tty=never)
    assert (got.value, got.source) == ("from-keyring", "keyring")
    prompted = passphrase.resolve(None, None, {}, is_tty=lambda: True, prompt=lambda _: "typed")
    assert prompted.source == "prompt"


def test_headless_without_any_source_says_how(in_memory_keyring: InMemoryKeyring) -> None:
    with pytest.raises(WalletError, match="--passphrase-file"):
        passphrase.resolve(None, "0xabc", {}, is_tty=lambda: False)


def test_in_memory_keyring_backend_counts_as_secure_but_plaintext_does_not() -> None:
    previous = keyring.get_keyring()
    try:
        keyring.set_keyring(InMemoryKeyring())
        assert passphrase.secure_keyring() is not None
        keyring.set_keyring(PlaintextLike())
        assert passphrase.secure_keyring() is None
        with pytest.raises(WalletError, match="no secure OS keyring"):
            passphrase.keyring_set("0xabc", "pw")
        from keyring.backends import fail

        keyring.set_keyring(fail.Keyring())
        assert passphrase.secure_keyring() is None
    finally:
        keyring.set_keyring(previous)


def test_prompt_confirmation_must_match() -> None:
    answers = iter(["one", "two"])
    with pytest.raises(WalletError, match="differ"):
        passphrase.resolve(
            None, None, {}, confirm=True, is_tty=lambda: True, prompt=lambda _: next(answers)
        )


def test_the_chainer_never_lets_a_plaintext_store_hold_the_passphrase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyring's ChainerBackend over a fixed list: what it finds on a host with several viable
    backends, such as a headless Linux box with keyrings.alt installed."""
    previous = keyring.get_keyring()
    plaintext, encrypted_file = PlaintextLike(), PlaintextLike()
    chained: list[KeyringBackend] = [plaintext, encrypted_file]
    monkeypatch.setattr(ChainerBackend, "backends", chained)
    try:
        chain = ChainerBackend()
        keyring.set_keyring(chain)
        assert float(chain.priority) >= 1  # what the old check looked at: it passed
        assert passphrase.secure_keyring() is None
        with pytest.raises(WalletError, match="no secure OS keyring"):
            passphrase.keyring_set("0xabc", "pw")
        assert plaintext.secrets == {} and encrypted_file.secrets == {}

        secure = InMemoryKeyring()
        chained[:] = [secure, plaintext]
        assert passphrase.secure_keyring() is secure  # used directly, never through the chain
        passphrase.keyring_set("0xabc", "pw")
        assert secure.secrets and plaintext.secrets == {}
        plaintext.set_password(passphrase.KEYRING_SERVICE, "0xdef", "planted")
        assert passphrase.keyring_get("0xdef") is None  # the plaintext store is never read

        chained[:] = [plaintext, secure]  # an insecure store first: the chain writes there
        assert passphrase.secure_keyring() is None
    finally:
        keyring.set_keyring(previous)


def test_the_passphrase_leaves_the_environment_once_read_and_no_repr_shows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(passphrase.VALUE_ENV, "hunter2 words")
    got = passphrase.resolve(None, None, is_tty=lambda: False)
    assert (got.value, got.source) == ("hunter2 words", "environment")
    assert passphrase.VALUE_ENV not in os.environ  # spawned workers no longer inherit it
    assert "hunter2" not in repr(got) and "environment" in repr(got)


def test_a_planted_temp_file_or_link_beside_the_target_is_never_written(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore"
    wallet.create_wallet(keystore, "pw", CHEAP)
    shared = tmp_path / "shared"  # think /tmp: another user can create files here
    shared.mkdir()
    victim = tmp_path / "theirs.json"
    victim.write_text("theirs")
    target = shared / "backup.json"
    (shared / "backup.json.tmp").symlink_to(victim)  # the old fixed temp name, followed before
    wallet.export_keystore(keystore, "pw", target)
    assert victim.read_text() == "theirs"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert '"crypto"' in target.read_text()  # the keystore JSON, written in a fresh file
    assert sorted(p.name for p in shared.iterdir()) == ["backup.json", "backup.json.tmp"]
