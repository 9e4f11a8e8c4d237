"""What the Wallet screen reads and writes, with no textual: the home's wallet address, the payout
address (config `[wallet] payout`), the earnings history as CSV, and the keystore backup.

The private key is never shown by the dashboard: the key export writes the *encrypted* keystore
(mode 0600) to a path the user chooses, after checking the passphrase opens it (docs/TUI.md says
why). `cortensor-desktop wallet export --yes` remains the way to print the raw key.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chain.errors import WalletError
from cortensor_desktop.config import (
    ConfigError,
    load_config,
    parse_value,
    set_config_value,
    write_atomically,
)
from engine.state.summary import Earnings

EarningsRow = tuple[float, str, Earnings]  # (ts, node, the earnings it reported)
CSV_COLUMNS = ("time_utc", "node", "earned_wei", "withdrawable_wei", "gas_balance_wei")


def earnings_csv(history: Iterable[EarningsRow]) -> str:
    """The earnings history, oldest first, amounts in wei (exact integers, no float rounding)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for ts, node, e in history:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        writer.writerow((when, node, e.earned_wei, e.withdrawable_wei, e.gas_balance_wei))
    return out.getvalue()


def write_earnings_csv(path: Path, history: Iterable[EarningsRow]) -> int:
    """Write the CSV atomically; refuses to replace a file. Returns the rows written."""
    rows = list(history)
    if path.exists():
        raise ConfigError(f"{path} already exists: choose another name")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} is not a folder")
    write_atomically(path, earnings_csv(rows))
    return len(rows)


def user_path(text: str, base: Path) -> Path:
    """What a person typed, as a path: ~ expanded, relative to `base`."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else base / path


@dataclass
class WalletBackend:
    """One home's wallet: keystore folder, config file, and where exports go by default."""

    keystore_dir: Path
    config_path: Path
    export_dir: Path = field(default_factory=Path.home)
    # (wei or None, a note) on the active network; the CLI's `wallet show` answer
    balance: Callable[[str], tuple[int | None, str]] | None = None
    environ: dict[str, str] | None = None

    def address(self) -> tuple[str | None, str]:
        """(address, keystore path) or (None, why there is none)."""
        from chain.wallet import wallet_info

        try:
            info = wallet_info(self.keystore_dir)
        except WalletError as exc:
            return None, str(exc)
        return info.address, str(info.path)

    def payout(self) -> str:
        return load_config(self.config_path, self.environ).config.wallet.payout

    def set_payout(self, text: str) -> str:
        """Validate (config's own rules), checksum and save `[wallet] payout`; returns it."""
        from eth_utils.address import to_checksum_address

        value = parse_value("wallet.payout", text)  # the config's own rule: 0x + 40 hex, or empty
        address = to_checksum_address(value) if value else ""
        set_config_value(self.config_path, "wallet.payout", address, self.environ)
        return address

    def export_keystore(self, passphrase: str, target: Path) -> Path:
        """The encrypted keystore copied to `target` (0600) if `passphrase` opens it."""
        from chain.wallet import export_keystore

        return export_keystore(self.keystore_dir, passphrase, target).path

    def default_csv(self, now: float) -> Path:
        name = time.strftime("cortensor-earnings-%Y%m%d-%H%M%S.csv", time.gmtime(now))
        return self.export_dir / name

    def default_keystore_copy(self, address: str) -> Path:
        return self.export_dir / f"cortensor-wallet-{address[2:10].lower()}.json"


def is_private(path: Path) -> bool:
    """Only the owner may read it (what the key backup promises)."""
    return os.name == "nt" or path.stat().st_mode & 0o077 == 0
