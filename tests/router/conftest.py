"""One embedded network with a router in front, shared by every router test.

Real parts throughout: the in-process chain with the contracts, three miners and an oracle on
real llama.cpp workers (SmolLM2-135M, MiniLM), the router's HTTP server on 127.0.0.1, and the
real `openai` package as the client. Starting the network and getting its miners into the
user-task pool is the expensive part, so it happens once per test run; network tasks then stop
(one passed task puts a miner in the pool) so user tasks do not queue behind them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chain.wrappers import NodeStatus
from cortensor_desktop.hosting.router_host import embedded_router
from cortensor_desktop.service.router_api import RouterServer
from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.models.store import ModelStore
from engine.node.miner import MinerSettings
from engine.node.oracle import OracleSettings
from engine.node.router import RouterSettings
from engine.state.database import Database
from engine.state.events import EventBus
from profiler.catalogue import load_catalogue

MODEL = "smollm2-135m-instruct"
# Short answers make the first network task (which puts the miners in the pool) quick; it is
# also the router's max_tokens limit here.
ANSWER_LIMIT = 32
# Small and fast: one miner per request unless a test asks for more (the `cortensor` field).
SETTINGS = RouterSettings(
    redundancy=1,
    max_in_flight=3,
    max_queue=3,
    pool_wait_s=20,
    request_timeout_s=150,
    poll_s=0.2,
)


@dataclass
class RoutedNetwork:
    network: EmbeddedNetwork
    db: Database
    models_dir: Path
    server: RouterServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def router(self) -> Any:
        return self.server.front.router

    def openai(self, **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=self.url, api_key="unused", max_retries=0, **kwargs)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def router_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("router-models")
    store = ModelStore(folder, load_catalogue())
    store.pull(MODEL)
    store.pull(store.catalogue.of_kind("embedding")[0].id)
    return folder


@pytest.fixture(scope="session")
def routed(
    tmp_path_factory: pytest.TempPathFactory, router_models: Path
) -> Iterator[RoutedNetwork]:
    db = Database(tmp_path_factory.mktemp("router-home") / "node.sqlite3")
    network = EmbeddedNetwork(
        db,
        router_models,
        EventBus(),
        EmbeddedNetworkSettings(
            miners=3,
            miner=MinerSettings(answer_max_tokens=ANSWER_LIMIT),
            oracle=OracleSettings(task_interval_s=3600, answer_max_tokens=ANSWER_LIMIT),
        ),
    )
    network.start()
    server = None
    try:
        assert network.chain is not None
        registry = network.chain.client().registry
        wait_until(
            lambda: all(
                registry.node_info(m.address).status == NodeStatus.EPHEMERAL for m in network.miners
            ),
            240,
            "the miners to join the user-task pool",
        )
        server = embedded_router(network, db, router_models, "127.0.0.1", 0, SETTINGS)
        assert server is not None
        server.start()
        yield RoutedNetwork(network, db, router_models, server)
    finally:
        if server is not None:
            server.stop()
        network.stop()
