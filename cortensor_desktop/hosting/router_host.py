"""Assembling a router: its account, engine, tokenizers, validator and HTTP front.

Two places build one: `run` on the embedded network (the router pays with a free dev account,
reuses the oracle's validator and reads the miners' limits from the network's settings), and
`router --network NAME` (a devnet account on `local`, this home's wallet elsewhere; its own
validator workers, started on the first `/api/v1/validate`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from cortensor_desktop.service.router_api import (
    Access,
    Front,
    RouterMetrics,
    RouterServer,
    Tokens,
    check_bind,
)
from engine.node.router import Router, RouterSettings
from engine.state.database import Database
from engine.state.journal import ChainKey
from engine.state.router_store import ApiKeys

log = logging.getLogger(__name__)


def chat_models(models_dir: Path) -> tuple[list[str], str]:
    """The catalogue's chat models (what a request may name) and the default one."""
    from engine.models.store import ModelStore

    store = ModelStore(models_dir)
    names = [m.id for m in store.catalogue.of_kind("chat")]
    return names, store.default_chat_model().id


def tokenizer_resolver(models_dir: Path) -> Any:
    """Model id -> its Tokenizer, from the installed model file (pulled if missing)."""
    from engine.inference.tokenizer import Tokenizer
    from engine.models.store import ModelStore

    def resolve(model: str) -> Tokenizer:
        return Tokenizer(ModelStore(models_dir).pull(model))

    return resolve


class OwnValidator:
    """The router's own validator (chat, embedding and scoring workers, like an oracle's): built
    on the first `/api/v1/validate`, its workers closed with the router. A router in front of an
    embedded network borrows the oracle's instead, which the oracle closes."""

    def __init__(self, models_dir: Path, model: str) -> None:
        self.models_dir = models_dir
        self.model = model
        self.workers: list[Any] = []

    def __call__(self) -> Any:
        from engine.inference.runtime import InferenceWorker
        from engine.inference.scoring_copy import scoring_model
        from engine.models.store import ModelStore
        from engine.poi.validator import Validator
        from profiler.load_settings import LoadSettings

        store = ModelStore(self.models_dir)
        embedding = store.catalogue.of_kind("embedding")[0].id
        chat_path, load = store.pull(self.model), LoadSettings(n_ctx=2048, n_threads=1)
        chat = InferenceWorker(chat_path, load, kind="chat")
        embed = InferenceWorker(
            store.pull(embedding), LoadSettings(n_ctx=512, n_threads=1), kind="embedding"
        )
        copy = scoring_model(chat_path, load)
        scorer = InferenceWorker(copy, load, kind="chat") if copy else None
        for worker in (chat, embed, scorer):
            if worker is not None:
                self.workers.append(worker)
                worker.start()
        return Validator(chat, embed, scorer=scorer)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers.clear()


def build_server(
    *,
    client: Any,
    db: Database,
    chain: ChainKey,
    models_dir: Path,
    settings: RouterSettings,
    network: str,
    host: str,
    port: int,
    allow_remote: bool = False,
    validator: Any = None,
    pool: Any = None,
) -> RouterServer:
    keys = ApiKeys(db)
    required = check_bind(host, allow_remote, keys)
    names, default = chat_models(models_dir)
    router = Router(client, db, chain, settings, known_models=names, network=network, pool=pool)
    front = Front(
        router,
        Access(keys, required, settings.price_wei),
        Tokens(tokenizer_resolver(models_dir)),
        default,
        validator=validator or OwnValidator(models_dir, default),
        metrics=RouterMetrics(),
    )
    return RouterServer(front, host, port)


def embedded_router(
    network: Any,
    db: Database,
    models_dir: Path,
    host: str,
    port: int,
    settings: RouterSettings | None = None,
    account_index: int | None = None,
) -> RouterServer | None:
    """A router in front of a started embedded network; None when no dev account is free."""
    chain = network.chain
    index = len(network.miners) if account_index is None else account_index
    if chain is None or index >= len(chain.accounts):
        log.warning("router off: the embedded chain has no free dev account to pay with")
        return None
    base = settings or RouterSettings()
    miner = network.settings.miner_settings()
    settings = replace(
        base,
        max_tokens_limit=min(miner.answer_max_tokens, network.settings.oracle.answer_max_tokens),
        context_tokens=network.settings.load_settings().n_ctx,
        redundancy=min(base.redundancy, len(network.miners)),
    )
    oracle = network.oracle
    server = build_server(
        client=chain.client(chain.accounts[index]),
        db=db,
        chain=ChainKey(chain.chain_id, chain.genesis_hash),
        models_dir=models_dir,
        settings=settings,
        network="embedded",
        host=host,
        port=port,
        validator=(lambda: oracle.validator) if oracle is not None else None,
        pool=oracle.pool if oracle is not None else None,  # read once for the whole process
    )
    return server


class RunRouter:
    """The router `run` serves in front of its embedded network ([router] port; 0: off).

    A port in use or a network without a free account turns the router off with a warning:
    the node itself still runs."""

    def __init__(self, db: Database, models_dir: Path, port: int, redundancy: int = 3) -> None:
        self.db = db
        self.models_dir = models_dir
        self.port = port
        self.redundancy = redundancy
        self.server: RouterServer | None = None

    def start(self, network: Any) -> str | None:
        """Serve in front of a started network; the OpenAI base URL, or None when off."""
        if self.port == 0:
            log.info("router off ([router] port = 0)")
            return None
        try:
            server = embedded_router(
                network,
                self.db,
                self.models_dir,
                "127.0.0.1",
                self.port,
                RouterSettings(redundancy=self.redundancy),
            )
            if server is None:
                return None
            server.start()
        except (OSError, ValueError) as exc:
            log.warning("router off: %s", exc)
            return None
        self.server = server
        server.front.router.resume()
        log.info("router: point OpenAI clients at %s (any API key)", server.url)
        return server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
