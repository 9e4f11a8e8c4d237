"""Revert decoding as a pure function, for the two shapes the backends produce."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from chain.reverts import decode_revert

DATA = function_signature_to_4byte_selector("PingTooSoon(uint64)") + encode(["uint64"], [1234])


class TransactionFailed(Exception):
    """Shaped like eth_tester's: the revert bytes inside the message."""


class ContractCustomError(Exception):
    """Shaped like web3's from an HTTP node: hex data."""

    def __init__(self, message: str, data: str) -> None:
        super().__init__(message)
        self.data = data


def test_in_process_message_with_bytes_literal() -> None:
    exc = TransactionFailed(f"execution reverted: {DATA!r}")
    decoded = decode_revert(exc, "NodeStats.ping")
    assert decoded is not None
    assert (decoded.error, decoded.error_args) == ("PingTooSoon", {"nextAllowed": 1234})
    assert str(decoded).startswith("NodeStats.ping: the contract rejected it: PingTooSoon(")


def test_http_node_hex_data() -> None:
    exc = ContractCustomError("0x" + DATA.hex(), "0x" + DATA.hex())
    decoded = decode_revert(exc)
    assert decoded is not None and decoded.error_args["nextAllowed"] == 1234


def test_unknown_selector_and_plain_errors_are_not_reverts() -> None:
    assert decode_revert(TransactionFailed("execution reverted: b'\\x01\\x02\\x03\\x04'")) is None
    assert decode_revert(ValueError("connection refused")) is None
