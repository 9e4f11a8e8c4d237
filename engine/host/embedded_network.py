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
from dataclasses import dataclass, field, replace
from pathlib import Path

from chain.deploy import NetworkParams
from chain.devnet import EmbeddedChain, start_embedded
from engine.host.loop_threads import LoopDeath, LoopThreads
from engine.host.plan import NodePlan
from engine.inference.runtime import InferenceWorker
from engine.inference.scoring_copy import scoring_model
from engine.models.store import ModelStore
from engine.node.generation import ChatModel
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import Oracle, OracleSettings
from engine.poi.validator import Validator
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)

# Devnet protocol settings: pings every 10 s allowed, windows long enough for a slow 2-core box.
DEVNET_PARAMS = NetworkParams(min_ping_interval_s=10, step_window_s=120, answer_window_s=180)


@dataclass(frozen=True)
class EmbeddedNetworkSettings:
    miners: int = 3
    oracles: int = 1  # the first leads; the others take over when it stalls
    leader_grace_s: int = 60
    chat_model_id: str | None = None  # None: the store's default chat model
    n_ctx: int = 2048
    miner: MinerSettings = field(default_factory=MinerSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)
    payout: str | None = None  # every miner registers with it; None: each miner's own address
    # The plan (engine/host/plan.py embedded_plan): what every node loads and every miner
    # registers. None: the store's default chat model, tier and memory as `miner` says.
    plan: NodePlan | None = None

    def miner_settings(self) -> MinerSettings:
        return self.plan.miner_settings(self.miner) if self.plan else self.miner

    def load_settings(self) -> LoadSettings:
        base = LoadSettings(n_ctx=self.n_ctx, n_threads=1)
        return self.plan.load_settings(base) if self.plan else base


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
        self._loops = LoopThreads(self._stop, bus)
        self._workers: list[InferenceWorker] = []
        self._worker_names: list[str] = []
        self._worker_owners: dict[str, str] = {}  # worker name -> the address of its node
        self.chain: EmbeddedChain | None = None
        self.miners: list[Miner] = []
        self.oracles: list[Oracle] = []

    def start(self, threads: bool = True) -> None:
        """Build every node and register the miners; with `threads`, run their loops.

        Without threads the caller drives `miner.step()` and `oracle.step()` itself (tests that
        need a deterministic order, such as a crash between precommit and commit).
        """
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        chat_path, embed_path = self._models()
        self._progress("starting the in-process chain and deploying the contracts")
        params = replace(DEVNET_PARAMS, leader_grace_s=self.settings.leader_grace_s)
        self.chain = start_embedded(oracles=self.settings.oracles, params=params)
        key = ChainKey(self.chain.chain_id, self.chain.genesis_hash)
        if self.settings.miners > len(self.chain.accounts):
            raise ValueError(f"the embedded chain has {len(self.chain.accounts)} dev accounts")
        load = self.settings.load_settings()
        miner_settings = self.settings.miner_settings()
        for index, account in enumerate(self.chain.accounts[: self.settings.miners]):
            worker = self._worker(chat_path, load, "chat", f"miner {account.address[:10]}")
            self._worker_owners[f"miner {account.address[:10]}"] = account.address
            journal = Journal(self.db, key, account.address)
            client = self.chain.client(account)
            chat = self._miner_chat(index, worker)
            self.miners.append(
                Miner(client, chat, journal, self.bus, miner_settings, self.settings.payout)
            )
        oracles = self.chain.oracles
        scoring_path = scoring_model(chat_path, load, self._progress) if oracles else None
        for account in self.chain.oracles:
            name = f"oracle {account.address[:10]}"
            roles = ["validator", "embeddings"]
            scorer = None
            if scoring_path is not None:
                scorer = self._worker(scoring_path, load, "chat", f"{name} (scoring)")
                roles.append("scoring")
            validator = Validator(
                self._worker(chat_path, load, "chat", f"{name} (validator)"),
                self._worker(
                    embed_path,
                    LoadSettings(n_ctx=512, n_threads=1),
                    "embedding",
                    f"{name} (embeddings)",
                ),
                scorer=scorer,
            )
            for role in roles:
                self._worker_owners[f"{name} ({role})"] = account.address
            self.oracles.append(
                Oracle(
                    self.chain.client(account),
                    validator,
                    Journal(self.db, key, account.address),
                    self.bus,
                    self.settings.oracle,
                )
            )
        for miner in self.miners:
            miner.preflight()
        for oracle in self.oracles:
            oracle.start()
        if threads:
            self._spawn()

    @property
    def plan(self) -> NodePlan | None:
        return self.settings.plan

    def replan(self, plan: NodePlan) -> NodePlan:
        """A changed `[fit]`: every node keeps the bundled model it loaded, and every miner
        re-registers the new plan's tier and memory between two of its steps."""
        if plan.model_id != (self.plan.model_id if self.plan else plan.model_id):
            raise ValueError("the embedded network runs the bundled model; restart to change it")
        self.settings = replace(self.settings, plan=plan)
        settings = self.settings.miner_settings()
        for miner in self.miners:
            miner.swap_model(miner.chat, settings)
        return plan

    def _models(self) -> tuple[Path, Path]:
        plan = self.settings.plan
        chat_id = (
            plan.model_id if plan else self.settings.chat_model_id
        ) or self.store.default_chat_model().id
        embedding_id = self.store.catalogue.of_kind("embedding")[0].id
        self._progress(f"preparing models: {chat_id} and {embedding_id}")
        chat = self.store.pull(chat_id, plan.quant if plan else None)
        if plan is not None:
            chat = self.store.check(plan.model_id, plan.quant)  # damaged: exit 6, none registers
        return chat, self.store.pull(embedding_id)

    def _worker(self, path: Path, load: LoadSettings, kind: str, name: str) -> InferenceWorker:
        self._progress(
            f"loading {path.name} for {name} (ctx {load.n_ctx}, {load.n_threads} thread(s), "
            f"{load.n_gpu_layers} GPU layers)"
        )
        worker = InferenceWorker(path, load, kind=kind)
        worker.start()
        self._workers.append(worker)
        self._worker_names.append(name)
        return worker

    @property
    def workers(self) -> list[tuple[str, InferenceWorker]]:
        """Every inference worker with the node it serves (status views show pids, restarts)."""
        return list(zip(self._worker_names, self._workers, strict=True))

    @property
    def worker_owners(self) -> dict[str, str]:
        return dict(self._worker_owners)

    def _spawn(self) -> None:
        for miner in self.miners:
            self._loops.start(f"miner-{miner.address[:8]}", "miner", miner.run)
        for oracle in self.oracles:
            self._loops.start(f"oracle-{oracle.address[:8]}", "oracle", oracle.run)

    @property
    def loop_death(self) -> LoopDeath | None:
        """The first loop thread that died (the headless runner exits non-zero on it)."""
        return self._loops.death

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.cancel()
        self._loops.join(timeout_s)
        for worker in self._workers:
            worker.close()
        self._workers.clear()
        self._worker_names.clear()

    @property
    def oracle(self) -> Oracle | None:
        """The first oracle (the leader at start)."""
        return self.oracles[0] if self.oracles else None

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
