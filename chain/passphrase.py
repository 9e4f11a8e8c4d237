"""Where the wallet passphrase comes from, in a fixed order, so a service never hangs on a prompt.

1. `--passphrase-file PATH` or CORTENSOR_PASSPHRASE_FILE (works with systemd credentials);
2. CORTENSOR_PASSPHRASE;
3. the OS keyring, only when its active backend is a real secure store;
4. an interactive prompt, only when stdin is a terminal.
With none of these the caller gets a WalletError (exit code 4) that says how to provide one.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chain.errors import WalletError

FILE_ENV = "CORTENSOR_PASSPHRASE_FILE"
VALUE_ENV = "CORTENSOR_PASSPHRASE"
KEYRING_SERVICE = "cortensor-desktop"
# Backends that are not a secure store even when keyring calls them "recommended": the fail and
# null backends, and keyrings.alt's plaintext/base64 files (priority checked as well, see below).
_INSECURE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")

HOW_TO = (
    f"no wallet passphrase available: use --passphrase-file PATH, or set {FILE_ENV} "
    f"(e.g. a systemd credential) or {VALUE_ENV}, or store it in a secure OS keyring "
    "(`wallet new --remember`), or run interactively on a terminal"
)


@dataclass(frozen=True)
class Passphrase:
    value: str = field(repr=False)  # a repr (a log line, a traceback's locals) never shows it
    source: str  # "file", "environment", "keyring" or "prompt": for messages, never the value


def secure_keyring() -> object | None:
    """The keyring backend to use if it is a real secure store, else None.

    `keyring.core.recommended()` says yes even for keyrings.alt's plaintext backend, so the
    module and the priority are checked here: secure backends rate themselves at 1 or more.
    With several viable backends keyring's active one is its ChainerBackend, which would read
    from and write to every chained store, a plaintext file among them: it is never used as
    such. Its first chained backend is used directly when that one is secure (the one the
    chainer itself would write to), so no insecure store is ever read or written.
    """
    try:
        import keyring
    except ImportError:
        return None
    backend = keyring.get_keyring()
    chained = getattr(backend, "backends", None)
    if chained is not None:  # keyring.backends.chainer.ChainerBackend (or another chain)
        try:
            first = next(iter(chained), None)
        except Exception:
            return None
        return first if first is not None and _is_secure(first) else None
    return backend if _is_secure(backend) else None


def _is_secure(backend: object) -> bool:
    module = type(backend).__module__
    if module.startswith(_INSECURE_MODULES) or "plaintext" in type(backend).__name__.lower():
        return False
    if getattr(backend, "backends", None) is not None:
        return False  # a chain inside a chain: not a store we can vouch for
    try:
        priority = float(backend.priority)  # type: ignore[attr-defined]
    except Exception:
        return False
    return priority >= 1


def keyring_get(address: str) -> str | None:
    backend = secure_keyring()
    if backend is None:
        return None
    try:
        value = backend.get_password(KEYRING_SERVICE, address.lower())  # type: ignore[attr-defined]
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def keyring_set(address: str, passphrase: str) -> None:
    backend = secure_keyring()
    if backend is None:
        raise WalletError(
            "no secure OS keyring is available here (the active keyring backend is a "
            "plaintext, fail or null backend); use a passphrase file instead"
        )
    backend.set_password(KEYRING_SERVICE, address.lower(), passphrase)  # type: ignore[attr-defined]


def _read_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WalletError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise WalletError(f"the passphrase file {path} is empty")
    return value


def resolve(
    file_arg: str | None,
    address: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    confirm: bool = False,
    is_tty: Callable[[], bool] | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> Passphrase:
    """The passphrase from the first source that has one (see the module docstring)."""
    env = os.environ if environ is None else environ
    file_name = file_arg or env.get(FILE_ENV)
    if file_name:
        return Passphrase(_read_file(Path(file_name).expanduser()), "file")
    if env.get(VALUE_ENV):
        value = env[VALUE_ENV]
        if environ is None:
            # Read once, then gone: every process started from here on (inference workers,
            # anything they start) would otherwise inherit it, readable in /proc/PID/environ.
            os.environ.pop(VALUE_ENV, None)
        return Passphrase(value, "environment")
    if address:
        stored = keyring_get(address)
        if stored:
            return Passphrase(stored, "keyring")
    tty = is_tty or (lambda: sys.stdin.isatty() and sys.stderr.isatty())
    if tty():
        return Passphrase(_prompt(prompt, confirm), "prompt")
    raise WalletError(HOW_TO)


def _prompt(prompt: Callable[[str], str], confirm: bool) -> str:
    first = prompt("wallet passphrase: ")
    if not first:
        raise WalletError("an empty passphrase is not allowed")
    if confirm and prompt("repeat the passphrase: ") != first:
        raise WalletError("the two passphrases differ")
    return first
