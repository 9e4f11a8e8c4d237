"""What the Models screen lists: each catalogue model, whether it is installed, whether it fits here
and why. Pure: hardware, catalogue and the installed list in, rows out (no textual, no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.model_store import InstalledModel
from profiler.catalogue import Catalogue
from profiler.fit import FitSettings, check_model
from profiler.hardware import Hardware


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    kind: str
    parameters: str
    installed: str  # "Q4_1 98 MB" or "-"
    fits: bool
    why: str
    default: bool


def _params(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def model_rows(
    hardware: Hardware,
    catalogue: Catalogue,
    installed: Iterable[InstalledModel],
    settings: FitSettings | None = None,
) -> list[ModelRow]:
    have: dict[str, list[InstalledModel]] = {}
    for item in installed:
        have.setdefault(item.model_id, []).append(item)
    rows = []
    for entry in catalogue.models:
        fit = check_model(hardware, catalogue, entry.id, settings)
        local = ", ".join(f"{m.quant} {m.size_bytes / 1e6:.0f} MB" for m in have.get(entry.id, []))
        rows.append(
            ModelRow(
                model_id=entry.id,
                kind=entry.kind,
                parameters=_params(entry.parameters),
                installed=local or "-",
                fits=fit.fits,
                why=fit.detail,
                default=entry.default,
            )
        )
    return rows
