"""Several models per node within the plan's memory budget (the operators' "dynamic loading").

A `ModelPool` is the miner's chat runtime when its plan serves more than one model: a user task
for a served model selects it (loaded on demand), network tasks use the primary, and the least
recently used models are unloaded when the budget needs the room. Each load is a `LogLine`
event saying how long the swap took and what was unloaded. The budget is the plan's memory less
nothing else: the fit already took the oracle's embedding model out of the RAM budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chain.wrappers import model_id
from engine.inference.runtime import InferenceWorker, Prompt
from engine.inference.types import BenchResult, GenerationResult, SamplingParams, TokenEvent
from engine.state.events import Event, LogLine
from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PooledModel:
    name: str  # the catalogue id, registered on chain as keccak(name)
    path: Path
    load: LoadSettings
    bytes_needed: int  # the fit's peak estimate (RAM + VRAM)


class ModelPool:
    """A chat runtime over several models: `select` one, then `generate` runs on it."""

    def __init__(
        self,
        models: list[PooledModel],
        budget_bytes: int,
        publish: Callable[[Event], None],
        start: Callable[[PooledModel], InferenceWorker] | None = None,
        clock: Callable[[], float] = time.monotonic,
        preloaded: dict[str, InferenceWorker] | None = None,
    ) -> None:
        """`preloaded`: workers already running (the primary, loaded before registration)."""
        if not models:
            raise ValueError("a pool needs at least its primary model")
        self.models = {m.name: m for m in models}
        self.primary = models[0].name
        self.budget_bytes = budget_bytes
        self._publish = publish
        self._start = start or _start_worker
        self._clock = clock
        self._loaded: OrderedDict[str, InferenceWorker] = OrderedDict(preloaded or {})  # LRU first
        self._by_chain_id = {model_id(m.name): m.name for m in models}
        self._active = self.primary
        self._lock = threading.Lock()

    # -- what the miner calls ------------------------------------------------------------
    def select(self, chain_model: bytes | None) -> None:
        """The model a task asks for (its on-chain id); None or an unknown id: the primary."""
        name = self._by_chain_id.get(chain_model, self.primary) if chain_model else self.primary
        with self._lock:
            self._ensure_loaded(name)
            self._loaded.move_to_end(name)
            self._active = name

    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams | None = None,
        *,
        on_token: Callable[[TokenEvent], None] | None = None,
    ) -> GenerationResult:
        with self._lock:
            worker = self._ensure_loaded(self._active)
        return worker.generate(prompt, params, on_token=on_token)

    def bench(self, prompt: str | None = None, runs: int = 3, gen_tokens: int = 64) -> BenchResult:
        with self._lock:
            worker = self._ensure_loaded(self._active)
        if prompt is None:
            return worker.bench(runs=runs, gen_tokens=gen_tokens)
        return worker.bench(prompt, runs, gen_tokens)

    # -- what the node calls --------------------------------------------------------------
    @property
    def loaded(self) -> list[str]:
        """Loaded models, least recently used first."""
        return list(self._loaded)

    def workers(self) -> list[tuple[str, InferenceWorker]]:
        return list(self._loaded.items())

    def preload(self) -> InferenceWorker:
        """Load the primary (at start, before the miner registers)."""
        with self._lock:
            return self._ensure_loaded(self.primary)

    def close(self) -> None:
        with self._lock:
            for worker in self._loaded.values():
                worker.close()
            self._loaded.clear()

    # -- loading within the budget ------------------------------------------------------------
    def _ensure_loaded(self, name: str) -> InferenceWorker:
        worker = self._loaded.get(name)
        if worker is not None:
            return worker
        wanted = self.models[name]
        started = self._clock()
        unloaded = self._make_room(wanted)
        worker = self._start(wanted)
        self._loaded[name] = worker
        took = self._clock() - started
        gone = f", unloaded {', '.join(unloaded)} (least recently used)" if unloaded else ""
        self._publish(
            LogLine(
                level="info",
                logger="model_pool",
                message=f"model swap: loaded {name} in {took:.1f} s{gone}; in memory: "
                f"{', '.join(self._loaded)} of a {self.budget_bytes / 2**30:.1f} GiB budget",
            )
        )
        return worker

    def _make_room(self, wanted: PooledModel) -> list[str]:
        unloaded: list[str] = []
        while self._loaded and self._used() + wanted.bytes_needed > self.budget_bytes:
            name, worker = self._loaded.popitem(last=False)
            worker.close()
            unloaded.append(name)
        return unloaded

    def _used(self) -> int:
        return sum(self.models[name].bytes_needed for name in self._loaded)


def _start_worker(model: PooledModel) -> InferenceWorker:
    worker = InferenceWorker(model.path, model.load, kind="chat")
    worker.start()
    return worker
