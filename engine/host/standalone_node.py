"""One node in its own process on a real network (a devnet on anvil, a testnet): miner or oracle.

The embedded network puts every node in one process; here the process is one node, signing with
its own key from its own keystore, keeping its journal in its own home, and talking to the chain
over the network profile's RPC URLs (with failover). The journal is keyed by chain id and genesis
hash, so a home that once mined on another chain never mistakes that chain's pending work for
this one's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from chain.client import ChainClient
from engine.errors import ModelError
from engine.host.loop_threads import LoopDeath, LoopThreads
from engine.host.model_pool import ModelPool, PooledModel
from engine.host.plan import MIB, NodePlan, install_plan
from engine.inference.runtime import InferenceWorker
from engine.inference.scoring_copy import scoring_model
from engine.models.store import ModelStore
from engine.node.generation import ChatModel
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import Oracle, OracleSettings
from engine.poi.validator import Validator
from engine.protocol import NodeRole
from engine.state.database import Database
from engine.state.events import Event, EventBus
from engine.state.journal import ChainKey, Journal
from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)
ROLES = ("miner", "oracle")


@dataclass(frozen=True)
class NodeSettings:
    role: str = "miner"
    chat_model_id: str | None = None
    n_ctx: int = 2048
    n_threads: int = 1
    miner: MinerSettings = field(default_factory=MinerSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)
    payout: str | None = None  # where earnings go; None: the node's own address
    # The plan (engine/host/plan.py): the model, how it loads, and what the miner registers.
    # None: the store's default chat model at n_ctx/n_threads, tier and memory as `miner` says.
    plan: NodePlan | None = None

    def miner_settings(self) -> MinerSettings:
        return self.plan.miner_settings(self.miner) if self.plan else self.miner

    def load_settings(self) -> LoadSettings:
        base = LoadSettings(n_ctx=self.n_ctx, n_threads=self.n_threads)
        return self.plan.load_settings(base) if self.plan else base


def chain_key(client: ChainClient) -> ChainKey:
    genesis = client.web3.eth.get_block(0)["hash"]
    return ChainKey(client.deployment.chain_id, "0x" + bytes(genesis).hex())


class StandaloneNode:
    def __init__(
        self,
        client: ChainClient,
        db: Database,
        models_dir: Path,
        bus: EventBus,
        settings: NodeSettings | None = None,
        progress: Callable[[str], None] | None = None,
        fallback: Callable[[str], NodePlan | None] | None = None,
    ) -> None:
        """`fallback(why)` plans the largest installed model that fits when the plan's model
        cannot be installed (engine/host/plan.py fallback_plan); None: that is an error."""
        if client.address is None:
            raise ValueError("a node needs a signing account")
        self.client = client
        self.address: str = client.address
        self.db = db
        self.store = ModelStore(models_dir)
        self.bus = bus
        self.settings = settings or NodeSettings()
        if self.settings.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self._progress = progress or (lambda message: log.info("%s", message))
        self._fallback = fallback
        self._pool: ModelPool | None = None  # several models per node (plan.extras)
        self._stop = threading.Event()
        self._loops = LoopThreads(self._stop, bus)
        self._workers: list[tuple[str, InferenceWorker]] = []
        self.miner: Miner | None = None
        self.oracle: Oracle | None = None

    def start(self) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.client.check_protocol()
        journal = Journal(self.db, chain_key(self.client), self.address)
        chat = self._worker(self._chat_model(), self.settings.load_settings(), "chat", "validator")
        if self.settings.role == "miner":
            runtime: ChatModel = self._model_pool(chat) or chat
            miner_settings = self.settings.miner_settings()  # after the pool: what it serves
            self.miner = Miner(
                self.client, runtime, journal, self.bus, miner_settings, payout=self.settings.payout
            )
            self.miner.preflight()
            target: Callable[[threading.Event], None] = self.miner.run
        else:
            embedding_id = self.store.catalogue.of_kind("embedding")[0].id
            embedder = self._worker(
                self.store.pull(embedding_id),
                LoadSettings(n_ctx=512, n_threads=1),
                "embedding",
                "embeddings",
            )
            validator = Validator(chat, embedder, scorer=self._scorer(chat))
            self.oracle = Oracle(self.client, validator, journal, self.bus, self.settings.oracle)
            self.oracle.start()
            target = self.oracle.run
        self._loops.start(f"{self.settings.role}-loop", self.settings.role, target)

    @property
    def loop_death(self) -> LoopDeath | None:
        """The loop thread's death, if it died (the headless runner exits non-zero on it)."""
        return self._loops.death

    @property
    def plan(self) -> NodePlan | None:
        return self.settings.plan

    def _chat_model(self) -> Path:
        """The plan's model installed and verified (or the fallback's), before any registration."""
        plan = self.settings.plan
        if plan is None:
            chat_id = self.settings.chat_model_id or self.store.default_chat_model().id
            miner = replace(self.settings.miner, model_name=chat_id)
            self.settings = replace(self.settings, miner=miner)
            self._progress(f"preparing {chat_id}")
            return self.store.pull(chat_id)
        self._progress(f"preparing {plan.model_id} {plan.quant}")
        installed, path = install_plan(self.store, plan, self._progress, self._fallback)
        if installed is not plan:
            self.settings = replace(self.settings, plan=installed)
            self._progress(installed.headline())
        return path

    def _model_pool(self, primary: InferenceWorker) -> ModelPool | None:
        """The plan's other models, installed now and loaded on demand; one that cannot be
        installed is not served (nor registered), saying so."""
        plan = self.settings.plan
        if plan is None or not plan.extras:
            return None
        path = Path(primary.model_path)
        models = [PooledModel(plan.model_id, path, primary.settings, plan.model_bytes)]
        served = []
        for extra in plan.extras:
            try:
                extra_path = self.store.pull(extra.model_id, extra.quant)
            except ModelError as exc:
                self._progress(f"not serving {extra.model_id}: {exc}")
                continue
            load = replace(primary.settings, n_ctx=extra.n_ctx, n_gpu_layers=extra.n_gpu_layers)
            models.append(PooledModel(extra.model_id, extra_path, load, extra.bytes_needed))
            served.append(extra)
        self.settings = replace(self.settings, plan=replace(plan, extras=tuple(served)))
        self._pool = ModelPool(
            models,
            plan.memory_mb * MIB,
            self._publish_as_miner,
            preloaded={plan.model_id: primary},
        )
        return self._pool

    def _publish_as_miner(self, event: Event) -> None:
        self.bus.publish(replace(event, node=self.address, role=NodeRole.MINER))

    def replan(self, plan: NodePlan) -> NodePlan:
        """A changed `[fit]`: install and load the new plan's model next to the running one,
        then hand it to the miner, which takes it after its open task and re-registers its
        tier, memory and models; the old worker closes then. Returns the plan that runs."""
        import time

        miner = self.miner
        if miner is None:
            raise ValueError("an oracle node takes a new plan at its next start")
        requested = time.monotonic()
        self._progress(f"re-planning: preparing {plan.model_id} {plan.quant}")
        installed, path = install_plan(self.store, plan, self._progress, self._fallback)
        worker = self._worker(
            path, installed.load_settings(self.settings.load_settings()), "chat", "validator"
        )
        self.settings = replace(self.settings, plan=installed)
        old_pool = self._pool
        self._pool = None
        runtime: ChatModel = self._model_pool(worker) or worker  # sets self._pool, the plan

        def swapped(old: object) -> None:
            retired = [old]
            if old is old_pool and old_pool is not None:
                retired += [w for _, w in old_pool.workers()]
                old_pool.close()
            for entry in [e for e in self._workers if any(e[1] is r for r in retired)]:
                self._workers.remove(entry)
                entry[1].close()

        miner.swap_model(runtime, self.settings.miner_settings(), swapped, requested)
        return self.settings.plan or installed

    def _scorer(self, chat: InferenceWorker) -> InferenceWorker | None:
        """The validator's scoring worker over a float16 copy, where one pays on this node."""
        copy = scoring_model(Path(chat.model_path), chat.settings, self._progress)
        return self._worker(copy, chat.settings, "chat", "scoring") if copy else None

    def _worker(self, path: Path, load: LoadSettings, kind: str, job: str) -> InferenceWorker:
        self._progress(f"loading {path.name} ({_describe_load(load)})")
        worker = InferenceWorker(path, load, kind=kind)
        worker.start()
        # Named as the embedded network names them, so status views read both the same way.
        name = f"{self.settings.role} {self.address[:10]}"
        self._workers.append((name if self.settings.role == "miner" else f"{name} ({job})", worker))
        return worker

    @property
    def workers(self) -> list[tuple[str, InferenceWorker]]:
        if self._pool is not None:
            name = f"miner {self.address[:10]}"
            return [
                (name if model == self._pool.primary else f"{name} ({model})", worker)
                for model, worker in self._pool.workers()
            ]
        return list(self._workers)

    @property
    def worker_owners(self) -> dict[str, str]:
        return {name: self.address for name, _ in self._workers}

    @property
    def miners(self) -> list[Miner]:
        return [self.miner] if self.miner is not None else []

    @property
    def oracles(self) -> list[Oracle]:
        return [self.oracle] if self.oracle is not None else []

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for _, worker in self._workers:
            worker.cancel()
        self._loops.join(timeout_s)
        for _, worker in self._workers:
            worker.close()
        self._workers.clear()
        if self._pool is not None:
            self._pool.close()

    @property
    def tasks_done(self) -> int:
        if self.miner is not None:
            return self.miner.tasks_done
        return self.oracle.sessions_ended if self.oracle is not None else 0


def _describe_load(load: LoadSettings) -> str:
    """How a worker loads its model, as the plan said (the log shows plan and load agree)."""
    return f"ctx {load.n_ctx}, {load.n_threads} thread(s), {load.n_gpu_layers} GPU layers"
