"""Turn a revert into a typed ContractRevert, whichever backend reported it.

The in-process chain raises eth_tester's TransactionFailed with the revert bytes in its message;
an HTTP node makes web3 raise ContractCustomError / ContractLogicError with hex data. Both carry
the same 4-byte selector + ABI-encoded arguments, decoded here against every contract's errors.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector

from chain.artifacts import all_error_abis
from chain.errors import ContractRevert

_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")
_BYTES_LITERAL = re.compile(r"b(['\"]).*\1", re.DOTALL)


@cache
def _selectors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for entry in all_error_abis():
        types = [i["type"] for i in entry["inputs"]]
        names = [i["name"] or f"arg{n}" for n, i in enumerate(entry["inputs"])]
        signature = f"{entry['name']}({','.join(types)})"
        table[function_signature_to_4byte_selector(signature)] = (entry["name"], types, names)
    return table


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a backend's exception, if any."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    for arg in exc.args:
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, str):
            literal = _BYTES_LITERAL.search(arg)
            if literal:
                value = ast.literal_eval(literal.group(0))
                if isinstance(value, bytes):
                    return value
            hexed = _HEX.search(arg)
            if hexed:
                return bytes.fromhex(hexed.group(0)[2:])
    return None


def decode_revert(exc: BaseException, context: str = "") -> ContractRevert | None:
    """A ContractRevert when `exc` is a revert with one of our custom errors, else None."""
    data = revert_data(exc)
    if data is None or len(data) < 4:
        return None
    known = _selectors().get(data[:4])
    if known is None:
        return None
    name, types, names = known
    values = abi_decode(types, data[4:])
    return ContractRevert(name, dict(zip(names, values, strict=True)), context)


def is_revert(exc: BaseException) -> bool:
    kind = type(exc).__name__
    return kind in {"TransactionFailed", "ContractCustomError", "ContractLogicError"}
