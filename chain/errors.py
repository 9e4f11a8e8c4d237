"""Errors of the chain layer, each with a message written for the user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChainError(Exception):
    """Base of the chain layer's errors: RPC, contracts, transactions (exit code 5)."""


class RpcUnavailable(ChainError):
    """No RPC URL of the profile answered, after retries and failover."""


class ChainIdMismatch(ChainError):
    """The RPC serves another chain than the profile names: signing there could replay funds."""


class TransactionTimeout(ChainError):
    """A sent transaction had no receipt within the time allowed."""


class FeeCapExceeded(ChainError):
    """The chain's base fee is above the fee cap of the config: a transaction would not be mined."""


class ContractRevert(ChainError):
    """A contract rejected a call, decoded from its custom error (same on every backend)."""

    def __init__(self, error: str, args: Mapping[str, Any], context: str = "") -> None:
        self.error = error
        self.error_args = dict(args)
        shown = ", ".join(f"{k}={v}" for k, v in self.error_args.items())
        where = f"{context}: " if context else ""
        super().__init__(f"{where}the contract rejected it: {error}({shown})")


class DevnetError(ChainError):
    """The local devnet (anvil) cannot start, is not running, or cannot be reached."""


class WalletError(Exception):
    """Keystore or passphrase problems (exit code 4). Messages never contain key material."""
