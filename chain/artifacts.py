"""Compiled contracts (ABI + bytecode) in assets/contracts/, from scripts/compile_contracts.js."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chain.errors import ChainError

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "contracts"
# The contracts a network runs, in deployment order. StoredAnswersQueue is for bench/gas.py only.
NETWORK_CONTRACTS = ("NodeRegistry", "NodeStats", "SessionPayment", "Cognitive", "SessionQueue")
# What the app was built against; contracts report theirs through protocolVersion().
PROTOCOL_VERSION = 3


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ChainError(f"contract artifact {path} is missing or unreadable: {exc}") from None
    return Artifact(name=name, abi=raw["abi"], bytecode=raw["bytecode"])


def all_error_abis() -> list[dict[str, Any]]:
    """Every custom error of every contract, for decoding reverts whichever contract raised."""
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(ARTIFACTS_DIR.glob("*.json")):
        for entry in load_artifact(path.stem).abi:
            if entry.get("type") == "error":
                seen.setdefault(entry["name"], entry)
    return list(seen.values())
