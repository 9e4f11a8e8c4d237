"""The whole protocol on one machine: an in-process chain, one oracle and k miners.

This is what `run` does on the `embedded` network, so a single machine sees every step of the
PoUW state machine with real contracts and real inference. Each miner has its own inference
worker (a node is a node: its own model and process) with one thread, and OpenMP told to wait
passively, since several workers share a small machine. The oracle holds the same chat model
and the embedding model. Every node publishes to one event bus; views read it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chain.deploy import NetworkParams
from chain.devnet import EmbeddedChain, start_embedded
from engine.database import Database
from engine.events import EventBus
from engine.journal import ChainKey, Journal
from engine.miner import ChatModel, Miner, MinerSettings
from engine.model_store import ModelStore
from engine.oracle import Oracle, OracleSettings
from engine.runtime import InferenceWorker
from engine.validator import Validator
from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)

# Devnet protocol settings: pings every 10 s allowed, windows long enough for a slow 2-core box.
DEVNET_PARAMS = NetworkParams(min_ping_interval_s=10, step_window_s=120, answer_window_s=180)


@dataclass(frozen=True)
class EmbeddedNetworkSettings:
    miners: int = 3
    chat_model_id: str | None = None  # None: the store's default chat model
    n_ctx: int = 2048
    miner: MinerSettings = field(default_factory=MinerSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)


class EmbeddedNetwork:
    def __init__(
        self,
        db: Database,
        models_dir: Path,
        bus: EventBus,
        settings: EmbeddedNetworkSettings | None = None,
        progress: Callable[[str], None] | None = None,
        miner_chat: Callable[[int, InferenceWorker], ChatModel] | None = None,
    ) -> None:
        self.db = db
        self.store = ModelStore(models_dir)
        self.bus = bus
        self.settings = settings or EmbeddedNetworkSettings()
        self._progress = progress or (lambda message: log.info("%s", message))
        # How miner i uses its worker: honest by default; tests plug in dishonest behaviour.
        self._miner_chat = miner_chat or (lambda _index, worker: worker)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers: list[InferenceWorker] = []
        self.chain: EmbeddedChain | None = None
        self.miners: list[Miner] = []
        self.oracle: Oracle | None = None

    def start(self, threads: bool = True) -> None:
        """Build every node and register the miners; with `threads`, run their loops.

        Without threads the caller drives `miner.step()` and `oracle.step()` itself (tests that
        need a deterministic order, such as a crash between precommit and commit).
        """
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        chat_path, embed_path = self._models()
        self._progress("starting the in-process chain and deploying the contracts")
        self.chain = start_embedded(oracles=1, params=DEVNET_PARAMS)
        key = ChainKey(self.chain.chain_id, self.chain.genesis_hash)
        if self.settings.miners > len(self.chain.accounts):
            raise ValueError(f"the embedded chain has {len(self.chain.accounts)} dev accounts")
        load = LoadSettings(n_ctx=self.settings.n_ctx, n_threads=1)
        for index, account in enumerate(self.chain.accounts[: self.settings.miners]):
            worker = self._worker(chat_path, load, "chat", f"miner {account.address[:10]}")
            journal = Journal(self.db, key, account.address)
            client = self.chain.client(account)
            chat = self._miner_chat(index, worker)
            self.miners.append(Miner(client, chat, journal, self.bus, self.settings.miner))
        validator = Validator(
            self._worker(chat_path, load, "chat", "oracle (validator)"),
            self._worker(
                embed_path, LoadSettings(n_ctx=512, n_threads=1), "embedding", "oracle (embeddings)"
            ),
        )
        oracle_account = self.chain.oracles[0]
        self.oracle = Oracle(
            self.chain.client(oracle_account),
            validator,
            Journal(self.db, key, oracle_account.address),
            self.bus,
            self.settings.oracle,
        )
        for miner in self.miners:
            miner.preflight()
        self.oracle.start()
        if threads:
            self._spawn()

    def _models(self) -> tuple[Path, Path]:
        chat_id = self.settings.chat_model_id or self.store.default_chat_model().id
        embedding_id = self.store.catalogue.of_kind("embedding")[0].id
        self._progress(f"preparing models: {chat_id} and {embedding_id}")
        return self.store.pull(chat_id), self.store.pull(embedding_id)

    def _worker(self, path: Path, load: LoadSettings, kind: str, name: str) -> InferenceWorker:
        self._progress(f"loading {path.name} for {name}")
        worker = InferenceWorker(path, load, kind=kind)
        worker.start()
        self._workers.append(worker)
        return worker

    def _spawn(self) -> None:
        assert self.oracle is not None
        runners = [(f"miner-{m.address[:8]}", m.run) for m in self.miners]
        runners.append(("oracle", self.oracle.run))
        for name, target in runners:
            thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.cancel()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        for worker in self._workers:
            worker.close()
        self._threads.clear()
        self._workers.clear()

    def abort(self) -> None:
        """Stop now (a view quitting): set the stop flag and kill every worker process.

        A request in flight ends as "killed"; the journal makes the next start resume it. Call
        `stop()` afterwards (it returns quickly then) to join the loops and reap the workers.
        """
        self._stop.set()
        for worker in list(self._workers):
            worker.kill()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
