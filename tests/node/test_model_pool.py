"""Several models per node: a user task for a served model loads it on demand, the least recently
used one unloads when the budget needs the room, and each swap's time is an event.

The second model is the bundled SmolLM2 file under a second name ("smollm2-twin"): this offline
machine has one chat model. Real workers, the in-process chain, the real oracle.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from chain.devnet import start_embedded
from chain.wrappers import TaskState, model_id
from engine.host.embedded_network import DEVNET_PARAMS
from engine.host.model_pool import ModelPool, PooledModel
from engine.inference.runtime import InferenceWorker
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import Oracle, OracleSettings
from engine.node.user_session import submit_user_task
from engine.poi.validator import Validator
from engine.state.database import Database
from engine.state.events import EventBus, LogLine
from engine.state.journal import ChainKey, Journal
from profiler.catalogue import load_catalogue
from profiler.load_settings import LoadSettings
from tests.node.conftest import step_until

BUNDLED, TWIN = "smollm2-135m-instruct", "smollm2-twin"
ONE_MODEL = 400 * 2**20  # a budget with room for one SmolLM2 at ctx 1024, not two


def _models(models_dir: Path) -> list[PooledModel]:
    path = models_dir / load_catalogue().require(BUNDLED).quants[0].file_name
    load = LoadSettings(n_ctx=1024, n_threads=1)
    return [
        PooledModel(BUNDLED, path, load, 300 * 2**20),
        PooledModel(TWIN, path, load, 300 * 2**20),
    ]


def _swaps(events: list[object]) -> list[str]:
    return [e.message for e in events if isinstance(e, LogLine) and "model swap" in e.message]


def test_the_pool_loads_on_demand_and_unloads_the_least_recently_used(models_dir: Path) -> None:
    published: list[object] = []
    pool = ModelPool(_models(models_dir), ONE_MODEL, published.append)
    try:
        pool.preload()
        assert pool.loaded == [BUNDLED]
        first = pool.workers()[0][1]
        pool.select(model_id(TWIN))
        assert pool.loaded == [TWIN] and first.pid is None  # unloaded to make room
        assert pool.generate("Say hello.").text
        pool.select(None)  # a network task: the primary again
        assert pool.loaded == [BUNDLED]
        swaps = _swaps(published)
        assert len(swaps) == 3
        assert swaps[1].startswith(f"model swap: loaded {TWIN} in ")
        assert f"unloaded {BUNDLED} (least recently used)" in swaps[1]
        roomy = ModelPool(_models(models_dir), 2 * ONE_MODEL, published.append)
        try:
            roomy.select(model_id(BUNDLED))
            roomy.select(model_id(TWIN))
            assert roomy.loaded == [BUNDLED, TWIN]  # both fit: nothing unloaded
        finally:
            roomy.close()
    finally:
        pool.close()


def test_a_user_task_for_the_second_model_is_served_by_loading_it(
    tmp_path: Path, models_dir: Path
) -> None:
    chain = start_embedded(oracles=1, params=replace(DEVNET_PARAMS, eligibility_threshold=0))
    key = ChainKey(chain.chain_id, chain.genesis_hash)
    db, bus = Database(tmp_path / "node.sqlite3"), EventBus()
    events = bus.subscribe()
    pool = ModelPool(_models(models_dir), ONE_MODEL, bus.publish)
    pool.preload()
    models = _models(models_dir)
    oracle_chat = InferenceWorker(models[0].path, models[0].load)
    embedding = load_catalogue().of_kind("embedding")[0]
    embed = InferenceWorker(
        models_dir / embedding.quants[0].file_name, LoadSettings(n_ctx=512), kind="embedding"
    )
    oracle_chat.start()
    embed.start()
    try:
        user_account, miner_account = chain.accounts[:2]
        settings = MinerSettings(model_name=BUNDLED, served_models=(BUNDLED, TWIN))
        miner = Miner(
            chain.client(miner_account),
            pool,
            Journal(db, key, miner_account.address),
            bus,
            settings,
        )
        oracle_account = chain.oracles[0]
        oracle = Oracle(
            chain.client(oracle_account),
            Validator(oracle_chat, embed),
            Journal(db, key, oracle_account.address),
            bus,
            OracleSettings(max_open_sessions=0),
        )
        miner.preflight()
        oracle.start()
        user = chain.client(user_account)
        assert set(user.registry.models_of(miner.address)) == {model_id(BUNDLED), model_id(TWIN)}
        task = submit_user_task(user, TWIN, "Name a fruit.", 1, "quantized")
        step_until(
            lambda: user.queue.state(task.task_id) == TaskState.VALIDATED,
            [oracle, miner],
            timeout_s=300,
        )
        assert pool.loaded == [TWIN]
        swaps = _swaps(events.drain())
        assert any(s.startswith(f"model swap: loaded {TWIN} in ") for s in swaps)
    finally:
        pool.close()
        oracle_chat.close()
        embed.close()


def test_a_standalone_miner_with_extra_models_registers_them_and_names_their_workers(
    tmp_path: Path, models_dir: Path
) -> None:
    import json

    from engine.host.plan import ServedModel
    from engine.host.standalone_node import NodeSettings, StandaloneNode
    from engine.models.store import ModelStore
    from profiler.catalogue import default_catalogue_path, parse_catalogue

    raw = json.loads(default_catalogue_path().read_text(encoding="utf-8"))
    twin = json.loads(json.dumps(next(m for m in raw["models"] if m["id"] == BUNDLED)))
    twin.update(id=TWIN, name="SmolLM2 twin", default=False)
    raw["models"].append(twin)
    plan = replace(
        _bundled_plan(),
        extras=(ServedModel(TWIN, "Q4_1", twin["quants"][0]["file_name"], 1024, 0, 300 * 2**20),),
    )
    chain = start_embedded(oracles=1)
    client = chain.client(chain.accounts[0])
    node = StandaloneNode(
        client, Database(tmp_path / "n.sqlite3"), models_dir, EventBus(), NodeSettings(plan=plan)
    )
    node.store = ModelStore(models_dir, parse_catalogue(raw))
    node.start()
    try:
        assert set(client.registry.models_of(node.address)) == {model_id(BUNDLED), model_id(TWIN)}
        assert [name for name, _ in node.workers] == [f"miner {node.address[:10]}"]
        assert node.plan is not None and node.plan.served_models == (BUNDLED, TWIN)
    finally:
        node.stop()


def _bundled_plan():  # type: ignore[no-untyped-def]
    from engine.host.plan import PlanInputs, make_plan
    from profiler.fit import FitSettings
    from profiler.hardware import load_hardware_file

    recorded = Path(__file__).resolve().parents[1] / "profiler" / "recorded"
    hardware = load_hardware_file(recorded / "vps_4gb_2core_recorded.json")
    settings = FitSettings(model=BUNDLED, n_ctx=1024, n_threads=1)
    return make_plan(PlanInputs(hardware, load_catalogue(), settings))
