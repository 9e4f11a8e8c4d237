"""The oracle on the embedded network against answers and events meant to stop it.

Real contracts on the in-process chain, real llama.cpp workers, nodes stepped by hand. One
network task has three answerers: one reveals an empty answer (as an honest tiny model can),
one an answer of 20,000 characters, one answers honestly; and the validator's worker is killed
(a real SIGKILL, by a failpoint inside the worker) the first time it scores. The oracle must
end the session with 0 for the two bad answers and a pass for the honest one, judging again
after the crash. Then the oracle "restarts" (a new Oracle on the same journal, the old one never
stepped again) with a user task assigned and unfinished: the new one must rebuild it from the
chain and validate it. Before all that, a second deployment of the same contracts on the same
chain (an attacker's, naming our miner in its own TaskAssigned) must move nobody; and the miner
meets the user task as a replay after a restart, with an answer already journaled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chain.client import ChainClient, Deployment
from chain.deploy import NetworkParams, deploy_network
from chain.events import EventCursor
from chain.wrappers import TaskState
from engine.failpoints import ENV, ONCE_ENV
from engine.host.embedded_network import EmbeddedNetwork
from engine.inference.runtime import InferenceWorker
from engine.inference.types import GenerationResult, SamplingParams
from engine.node.oracle import Oracle
from engine.node.user_session import submit_user_task
from engine.protocol import TaskKind, TaskRole
from engine.state.events import Event, EventBus, InferenceFinished, Subscription, UserTaskStage
from engine.state.journal import TaskRef
from tests.node.conftest import step_until

HUGE = "x" * 20_000
BOUND_BEFORE = "Red, orange and yellow are three colours of the rainbow."
PROMPT = "Name three colours of the rainbow."


class FixedAnswerMiner:
    """Answers every challenge with `text` and no inference; topics and prompts stay real."""

    def __init__(self, honest: InferenceWorker, text: str) -> None:
        self.honest = honest
        self.text = text
        self.answered = 0

    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        result = self.honest.generate(prompt, params)
        if "questions about" in prompt or "Name one specific topic" in prompt:
            return result
        self.answered += 1
        return GenerationResult(self.text, (), "stop", result.figures, result.model)


class CountingMiner:
    def __init__(self, honest: InferenceWorker) -> None:
        self.honest = honest
        self.calls = 0

    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        self.calls += 1
        return self.honest.generate(prompt, params)


def _spoof_a_task_for(network: EmbeddedNetwork, honest_index: int) -> None:
    """Deploy a second network on the same chain and have its 'leader' assign our miner."""
    chain = network.chain
    assert chain is not None
    oracle, miner = network.oracles[0], network.miners[honest_index]
    addresses = deploy_network(
        chain.backend,
        chain.admin,
        [oracle.address],
        NetworkParams(eligibility_threshold=0),  # straight into the spoof's pool
    )
    spoof = Deployment(chain.chain_id, addresses)
    as_miner = ChainClient(chain.backend, spoof, chain.accounts[honest_index], miner.client.nonces)
    as_miner.registry.register(
        1, 0, "0.1.0", list(miner.client.registry.models_of(miner.address)), miner.address
    )
    user = ChainClient(chain.backend, spoof, chain.accounts[-1])
    task = submit_user_task(user, miner.settings.model_name, PROMPT, 1)
    as_oracle = ChainClient(chain.backend, spoof, chain.oracles[0], oracle.client.nonces)
    as_oracle.queue.assign(task.task_id, [miner.address])


@pytest.mark.timeout(600)  # about 90 s alone; four workers on two cores are slow when shared
def test_bad_answers_a_validator_crash_spoofed_events_and_a_restart_stop_nothing(
    make_network: Callable[..., EmbeddedNetwork], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    once = tmp_path / "failpoints-once"
    once.mkdir()
    monkeypatch.setenv(ENV, "worker-score")  # inherited by every worker; only the scorer scores
    monkeypatch.setenv(ONCE_ENV, str(once))
    chats: list[object] = []

    def miner_chat(index: int, worker: InferenceWorker) -> object:
        chat = [
            lambda: FixedAnswerMiner(worker, ""),
            lambda: FixedAnswerMiner(worker, HUGE),
            lambda: CountingMiner(worker),
        ][index]()
        chats.append(chat)
        return chat

    bus = EventBus()
    sub = bus.subscribe(maxsize=50_000)
    network = make_network(miners=3, threads=False, miner_chat=miner_chat, bus=bus)
    oracle, miners = network.oracles[0], network.miners
    honest = miners[2]
    counting = chats[2]
    assert isinstance(counting, CountingMiner)

    # -- events from another deployment at another address move nobody ----------------------
    _spoof_a_task_for(network, 2)
    for node in (honest, oracle):
        node.step()
    assert counting.calls == 0  # no inference for the spoofed assignment
    assert honest.journal.open_commits() == []
    assert oracle._user_open == {}  # the spoofed TaskQueued was not read

    # -- one session: an empty answer, a huge one, an honest one, and a validator crash ------
    step_until(lambda: oracle.sessions_ended >= 1, [oracle, *miners], timeout_s=300)
    _assert_bad_answers_scored_zero(network)

    # -- a user task survives an oracle restart, and the miner a replayed assignment ---------
    _restart_the_oracle_during_a_user_task(network, bus, sub)


def _assert_bad_answers_scored_zero(network: EmbeddedNetwork) -> None:
    oracle, miners = network.oracles[0], network.miners
    empty, huge, honest = miners
    cognitive = oracle.client.cognitive
    scored = {
        str(e.args["miner"]): (int(e.args["score"]), bool(e.args["passed"]))
        for e in EventCursor("Cognitive", cognitive.contract, "MinerScored", 0).poll()
        if int(e.args["id"]) == 1
    }
    assert scored == {
        empty.address: (0, False),
        huge.address: (0, False),
        honest.address: (scored[honest.address][0], True),
    }
    verdicts = {m.address: oracle.journal.recent_verdicts(m.address, 1)[0] for m in miners}
    assert verdicts[empty.address].failed_checks == ("empty",)
    assert verdicts[huge.address].failed_checks == ("length",)
    # The worker that scores: the float16 copy's on a CPU (engine.inference.scoring_copy).
    scoring = [w for name, w in network.workers if name.endswith("(scoring)")]
    validator = (
        scoring[0]
        if scoring
        else next(w for name, w in network.workers if name.endswith("(validator)"))
    )
    assert [d.signal_name for d in validator.deaths] == ["SIGKILL"]  # crashed once, judged again


def _restart_the_oracle_during_a_user_task(
    network: EmbeddedNetwork, bus: EventBus, sub: Subscription
) -> None:
    oracle, miners = network.oracles[0], network.miners
    honest = miners[2]
    chain = network.chain
    assert chain is not None
    user = chain.client(chain.accounts[-1])
    submitted = submit_user_task(user, honest.settings.model_name, PROMPT, 1)
    user_task = TaskRef(TaskKind.USER, submitted.session_id, submitted.task_id)
    # As if an earlier run (another build) had answered and journaled it before a restart: the
    # TaskAssigned it now reads is a replay. It must reveal the bound answer, not run again (a
    # different answer made the journal raise, and the miner's thread died of it).
    honest.journal.prepare_commit(user_task, TaskRole.ANSWERER, BOUND_BEFORE)
    queue = user.queue
    step_until(lambda: queue.state(submitted.task_id) >= TaskState.ASSIGNED, [oracle, *miners])
    assert oracle.journal.watch_from() is not None
    reborn = Oracle(oracle.client, oracle.validator, oracle.journal, bus, oracle.settings)
    reborn.start()  # the old oracle is never stepped again
    step_until(lambda: queue.state(submitted.task_id) == TaskState.VALIDATED, [reborn, *miners])
    assert reborn.user_results[submitted.task_id].miners == [honest.address]
    assert user.payment.escrowed_of(str(user.address)) == 0
    events: list[Event] = sub.drain()
    assert any(isinstance(e, UserTaskStage) and e.node == reborn.address for e in events)
    record = honest.journal.get(user_task)
    assert record is not None and record.state.value == "committed"
    assert not [
        e for e in events if isinstance(e, InferenceFinished) and e.task_kind is TaskKind.USER
    ]  # the replayed assignment ran no inference
    answers = EventCursor("SessionQueue", queue.contract, "TaskAnswer", 0).poll()
    assert [str(e.args["answer"]) for e in answers] == [BOUND_BEFORE]
