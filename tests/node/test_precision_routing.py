"""Precision and tier routing end to end: a quantized and a full-precision user session side by
side on the in-process chain, two miners registered from two plans, one serving each.

The full-precision miner's config registers GPU_FULL on the bundled Q4_1 file: this machine has
no GPU and no F16 chat model to serve (a plan gives GPU_FULL only to an F16/BF16 file fully on
a GPU, tests/engine/test_node_plan.py). Real workers, real contracts, real validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chain.deploy import NetworkParams
from chain.devnet import start_embedded
from chain.errors import ChainError
from chain.wrappers import Precision, TaskState, Tier, model_id
from engine.host.embedded_network import DEVNET_PARAMS
from engine.host.plan import PlanInputs, make_plan
from engine.inference.runtime import InferenceWorker
from engine.node.miner import Miner
from engine.node.oracle import Oracle, OracleSettings
from engine.node.user_session import (
    DEFAULT_PRICE_WEI,
    VALIDATION_LEVEL_POI,
    eligible_for_precision,
    submit_user_task,
)
from engine.poi.validator import Validator
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from profiler.catalogue import load_catalogue
from profiler.fit import FitSettings
from profiler.hardware import load_hardware_file
from profiler.load_settings import LoadSettings
from tests.node.conftest import step_until

BUNDLED = "smollm2-135m-instruct"
RECORDED = Path(__file__).resolve().parents[1] / "profiler" / "recorded"


@pytest.fixture(scope="module")
def workers(models_dir: Path) -> Iterator[tuple[InferenceWorker, InferenceWorker]]:
    """One chat worker the hand-driven nodes take turns on, and the oracle's embeddings."""
    catalogue = load_catalogue()
    chat = InferenceWorker(
        models_dir / catalogue.require(BUNDLED).quants[0].file_name,
        LoadSettings(n_ctx=2048, n_threads=1),
    )
    embedding = catalogue.of_kind("embedding")[0]
    embed = InferenceWorker(
        models_dir / embedding.quants[0].file_name,
        LoadSettings(n_ctx=512, n_threads=1),
        kind="embedding",
    )
    chat.start()
    embed.start()
    yield chat, embed
    chat.close()
    embed.close()


def test_full_precision_goes_only_to_the_gpu_full_miner_and_quantized_to_the_other(
    tmp_path: Path, workers: tuple[InferenceWorker, InferenceWorker]
) -> None:
    chat, embed = workers
    params: NetworkParams = replace(DEVNET_PARAMS, eligibility_threshold=0)  # pool on register
    chain = start_embedded(oracles=1, params=params)
    key = ChainKey(chain.chain_id, chain.genesis_hash)
    db, bus = Database(tmp_path / "node.sqlite3"), EventBus()
    rtx = load_hardware_file(RECORDED / "workstation_64gb_rtx4090_recorded.json")
    plan = make_plan(PlanInputs(rtx, load_catalogue(), FitSettings(model=BUNDLED)))
    assert plan.tier is Tier.GPU_QUANTIZED
    quantized_cfg = plan.miner_settings()
    full_cfg = replace(quantized_cfg, tier=int(Tier.GPU_FULL))  # the F16 stand-in (docstring)
    user_account, *miner_accounts = chain.accounts[:3]
    miners = [
        Miner(chain.client(a), chat, Journal(db, key, a.address), bus, cfg)
        for a, cfg in zip(miner_accounts, (quantized_cfg, full_cfg), strict=True)
    ]
    quantized_miner, full_miner = (m.address for m in miners)
    oracle_account = chain.oracles[0]
    oracle = Oracle(
        chain.client(oracle_account),
        Validator(chat, embed),
        Journal(db, key, oracle_account.address),
        bus,
        OracleSettings(max_open_sessions=0),  # user tasks only: no network task in the way
    )
    user = chain.client(user_account)
    miners[0].preflight()
    oracle.start()
    assert eligible_for_precision(user, "full") == 0
    with pytest.raises(ChainError, match="can serve full precision"):  # the user side refuses
        submit_user_task(user, BUNDLED, "Name a colour.", 1, "full")
    # A client that skips that check: the oracle leaves its task queued, not on the Q4 miner.
    user.payment.deposit(DEFAULT_PRICE_WEI)
    session, _ = user.queue.open_session(
        model_id(BUNDLED), int(Precision.FULL), VALIDATION_LEVEL_POI, 1, DEFAULT_PRICE_WEI
    )
    waiting_id, _ = user.queue.submit_task(session, "Name a colour.")
    for _ in range(3):
        oracle.step()
        miners[0].step()
    assert user.queue.state(waiting_id) == TaskState.QUEUED
    # A quantized task meanwhile: any miner serving the model may take it, here the Q4 one.
    quantized = submit_user_task(user, BUNDLED, "Name a fruit.", 1, "quantized")
    step_until(lambda: user.queue.state(quantized.task_id) != TaskState.QUEUED, [oracle])
    assert user.queue.state(waiting_id) == TaskState.QUEUED

    miners[1].preflight()
    assert user.registry.node_info(full_miner).tier == Tier.GPU_FULL
    assert user.registry.node_info(quantized_miner).tier == plan.tier
    assert user.registry.node_info(quantized_miner).memory_mb == plan.memory_mb
    assert eligible_for_precision(user, "full") == 1
    tasks = (waiting_id, quantized.task_id)
    step_until(
        lambda: all(user.queue.state(t) == TaskState.VALIDATED for t in tasks),
        [oracle, *miners],
        timeout_s=300,
    )
    assigned = {
        int(e.args["taskId"]): [str(m) for m in e.args["miners"]]
        for e in user.queue.cursor("TaskAssigned", 0).poll(int(user.web3.eth.block_number))
    }
    assert assigned[waiting_id] == [full_miner]
    assert assigned[quantized.task_id] == [quantized_miner]
