"""`cortensor-desktop doctor`: is this node able to earn, and if not, what to do about it.

The offline self-test plus the checks only a live setup can answer: the RPCs and their chain id,
the contracts' protocol version, gas and its runway, the keyring, proxies, the status API, the
installed models, the clock against the chain, and disk for the chosen model. Each check says ok,
warning or error, and for anything but ok what to do. `--bundle` packs a redacted archive for a
bug report (docs/INSTALL.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    OK = "ok"
    INFO = "info"  # nothing to check here (the embedded network has no RPC), not a problem
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    remedy: str = ""  # what to do; empty when there is nothing to do
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level.value,
            "message": self.message,
            "remedy": self.remedy,
            "facts": self.facts,
        }


def worst(checks: list[Check]) -> Level:
    order = [Level.OK, Level.INFO, Level.WARNING, Level.ERROR]
    return max((c.level for c in checks), key=order.index, default=Level.OK)
