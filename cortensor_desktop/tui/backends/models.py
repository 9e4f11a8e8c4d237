"""What the Models screen lists: each catalogue model, whether it is installed, whether it fits here
and why; and what the screen may do (install, remove) through the model store, the same calls
`models pull` and `models rm` make. No textual here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError
from engine.models.store import InstalledModel, ModelStore, ProgressCallback, PullProgress
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


@dataclass(frozen=True)
class ModelsBackend:
    """What the Models screen may do. `store` None: a read-only catalogue (install refused).

    `rows` lists the catalogue against this machine; `in_use` names the models the running node
    has loaded (removing one of those is refused: its workers map the file).
    """

    rows: Callable[[], list[ModelRow]]
    store: ModelStore | None = None
    in_use: Callable[[], Collection[str]] = lambda: ()

    def install(self, model_id: str, progress: ProgressCallback) -> Path:
        if self.store is None:
            raise ModelError("no models folder here: install with `cortensor-desktop models pull`")
        return self.store.pull(model_id, progress=progress)

    def removal_refused(self, model_id: str) -> str | None:
        """Why `model_id` may not be removed now, or None."""
        if self.store is None:
            return "no models folder here: remove with `cortensor-desktop models rm`"
        if model_id in self.in_use():
            return f"{model_id} is the model the running node uses: stop the node first"
        if not any(m.model_id == model_id for m in self.store.installed()):
            return f"{model_id} is not installed"
        return None

    def remove(self, model_id: str) -> list[Path]:
        refused = self.removal_refused(model_id)
        if refused is not None:
            raise ModelError(refused)
        assert self.store is not None  # removal_refused said so
        return self.store.remove(model_id)


def store_backend(
    store: ModelStore,
    hardware: Callable[[], Hardware],
    in_use: Callable[[], Collection[str]] = lambda: (),
    settings: FitSettings | None = None,
) -> ModelsBackend:
    """Rows from `hardware` (called once, then kept: probing is slow) and the store's files now."""
    probed: list[Hardware] = []

    def rows() -> list[ModelRow]:
        if not probed:
            probed.append(hardware())
        return model_rows(probed[0], store.catalogue, store.installed(), settings)

    return ModelsBackend(rows, store, in_use)


def progress_text(event: PullProgress) -> tuple[float | None, str]:
    """(fraction done or None when unknown, one line) for an install's progress event."""
    mib = event.done_bytes / 2**20
    if event.phase == "done":
        return 1.0, f"{event.model_id}: installed ({mib:,.1f} MiB from {event.source})"
    if event.total_bytes:
        fraction = min(1.0, event.done_bytes / event.total_bytes)
        total = event.total_bytes / 2**20
        return fraction, f"{event.model_id}: {event.phase} {mib:,.1f}/{total:,.1f} MiB"
    return None, f"{event.model_id}: {event.phase} {mib:,.1f} MiB"
