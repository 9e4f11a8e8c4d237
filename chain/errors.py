"""Errors of the chain layer, each with a message written for the user."""


class ChainError(Exception):
    """Base of the chain layer's errors: RPC, contracts, transactions (exit code 5)."""


class WalletError(Exception):
    """Keystore or passphrase problems (exit code 4). Messages never contain key material."""
