"""The node's signing key at start-up: unlock the home's keystore, or make it on first start.

A node started unattended (a service, `devnet up`) must not stop to ask: the passphrase comes
from the first configured source (file, environment, secure keyring, a prompt on a terminal)
and, when the home has no keystore yet, the keystore is created from that passphrase. Devnet
homes use cheaper scrypt settings, since many nodes unlock on a small machine at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from cortensor_desktop.logs import register_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeKey:
    account: LocalAccount
    created: bool
    passphrase_source: str


def node_account(keystore_dir: Path, passphrase_file: str | None, devnet: bool) -> NodeKey:
    from chain.passphrase import resolve
    from chain.wallet import (
        DEVNET_SCRYPT_N,
        STANDARD_SCRYPT_N,
        create_wallet,
        unlock,
        wallet_info,
        wallet_path,
    )

    exists = wallet_path(keystore_dir).exists()
    address = wallet_info(keystore_dir).address if exists else None
    passphrase = resolve(passphrase_file, address, confirm=not exists)
    register_secret(passphrase.value)
    if not exists:
        info = create_wallet(
            keystore_dir, passphrase.value, DEVNET_SCRYPT_N if devnet else STANDARD_SCRYPT_N
        )
        log.info(
            "created this node's wallet %s (passphrase from %s)", info.address, passphrase.source
        )
    return NodeKey(unlock(keystore_dir, passphrase.value), not exists, passphrase.source)
