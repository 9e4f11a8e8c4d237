"""Real nodes on the embedded network: in-process chain, real llama.cpp workers, real models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.inference.runtime import InferenceWorker
from engine.inference.types import GenerationResult, SamplingParams
from engine.models.store import ModelStore
from engine.node.generation import ChatModel
from engine.state.database import Database
from engine.state.events import EventBus
from profiler.catalogue import load_catalogue

MinerChat = Callable[[int, InferenceWorker], ChatModel]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model folder for the node tests, filled from the PyPI model packages (no network)."""
    folder = tmp_path_factory.mktemp("models")
    store = ModelStore(folder, load_catalogue())
    store.pull("smollm2-135m-instruct")
    store.pull(store.catalogue.of_kind("embedding")[0].id)
    return folder


@pytest.fixture
def make_network(tmp_path: Path, models_dir: Path) -> Iterator[Callable[..., EmbeddedNetwork]]:
    started: list[EmbeddedNetwork] = []

    def make(
        miners: int = 3,
        threads: bool = True,
        miner_chat: MinerChat | None = None,
        bus: EventBus | None = None,
        oracles: int = 1,
        leader_grace_s: int = 60,
    ) -> EmbeddedNetwork:
        network = EmbeddedNetwork(
            Database(tmp_path / "node.sqlite3"),
            models_dir,
            bus or EventBus(),
            EmbeddedNetworkSettings(miners=miners, oracles=oracles, leader_grace_s=leader_grace_s),
            miner_chat=miner_chat,
        )
        started.append(network)
        network.start(threads=threads)
        return network

    yield make
    for network in started:
        network.stop()


class CannedTextMiner:
    """A dishonest miner: answers every challenge with the same canned text, no inference."""

    def __init__(self, honest: InferenceWorker) -> None:
        self.honest = honest  # create/prepare still need real text to keep the session going

    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        result = self.honest.generate(prompt, params)
        if "questions about" in prompt or "Name one specific topic" in prompt:
            return result
        return GenerationResult(
            text="I am a helpful assistant and this is my answer to your question.",
            token_ids=(),
            finish_reason="stop",
            figures=result.figures,
            model=result.model,
        )


def step_until(condition: Callable[[], bool], nodes: Sequence[Any], timeout_s: float = 180) -> None:
    """Step hand-driven nodes round-robin until `condition` holds (tests that need an order)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the network did not get there in time"
        for node in nodes:
            node.step()
            if condition():
                return
        time.sleep(0.1)
