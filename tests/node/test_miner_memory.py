"""What a miner keeps of the chain's traffic is bounded, whatever anyone sends (F12).

A real Miner on the in-process chain, fed the events an attacker can emit for the price of
calldata: a queued task per block with a long prompt, sessions by the thousand, a preparer's
prompt list of any length. No model is needed: none of these is for this miner.
"""

from __future__ import annotations

from pathlib import Path

from chain.devnet import start_embedded
from chain.events import ChainEvent
from chain.wrappers import Precision, model_id
from engine.node.miner import MAX_TRACKED, MAX_USER_PROMPT_CHARS, Miner
from engine.node.network_tasks import MAX_PROMPT_CHARS, MAX_PROMPTS, PROMPT_SEPARATOR
from engine.node.user_session import DEFAULT_PRICE_WEI
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal


def _event(contract: str, name: str, block: int, **args: object) -> ChainEvent:
    return ChainEvent(contract, name, dict(args), block, "0x" + "00" * 32, 0)


def test_queued_prompts_sessions_and_challenge_prompts_stay_bounded(tmp_path: Path) -> None:
    chain = start_embedded(oracles=1)
    account = chain.accounts[0]
    journal = Journal(Database(tmp_path / "db.sqlite3"), ChainKey(chain.chain_id, "0x00"), "0x1")
    miner = Miner(chain.client(account), chat=None, journal=journal, bus=EventBus())  # type: ignore[arg-type]
    stranger = chain.accounts[1].address
    for i in range(1, 3 * MAX_TRACKED):
        miner._handle(_event("SessionQueue", "TaskQueued", i, taskId=i, sessionId=1, prompt="p"))
        miner._handle(
            _event(
                "Cognitive",
                "SessionRequested",
                i,
                id=i,
                seed=b"s",
                creator=stranger,
                preparer=stranger,
            )
        )
    assert len(miner._task_prompts) == MAX_TRACKED
    assert min(miner._task_prompts) == 2 * MAX_TRACKED  # the newest are kept
    assert len(miner._sessions) == MAX_TRACKED

    huge = "x" * (MAX_USER_PROMPT_CHARS + 1)
    miner._handle(
        _event("SessionQueue", "TaskQueued", 10**6, taskId=10**6, sessionId=1, prompt=huge)
    )
    assert 10**6 not in miner._task_prompts  # no context holds it: never answered, never kept

    flood = PROMPT_SEPARATOR.join("y" * 10_000 for _ in range(1000))
    session = 3 * MAX_TRACKED
    miner._handle(_event("Cognitive", "ChallengePrepared", session, id=session, prompts=flood))
    prompts = miner._sessions[session].prompts
    assert len(prompts) == MAX_PROMPTS
    assert {len(p) for p in prompts} == {MAX_PROMPT_CHARS}


def test_a_prompt_pushed_out_by_traffic_is_read_back_when_the_task_is_assigned(
    tmp_path: Path,
) -> None:
    chain = start_embedded(oracles=1)
    user = chain.client(chain.accounts[-1])
    user.payment.deposit(DEFAULT_PRICE_WEI)
    session_id, _ = user.queue.open_session(
        model_id("smollm2-135m-instruct"), int(Precision.QUANTIZED), 1, 1, DEFAULT_PRICE_WEI
    )
    task_id, queued = user.queue.submit_task(session_id, "Name three colours of the rainbow.")
    journal = Journal(Database(tmp_path / "db.sqlite3"), ChainKey(chain.chain_id, "0x00"), "0x1")
    miner = Miner(chain.client(chain.accounts[0]), chat=None, journal=journal, bus=EventBus())  # type: ignore[arg-type]
    for i in range(task_id + 1, task_id + 2 * MAX_TRACKED):  # an attacker's flood of tasks
        miner._handle(_event("SessionQueue", "TaskQueued", i, taskId=i, sessionId=1, prompt="p"))
    assert task_id not in miner._task_prompts
    head = int(chain.web3.eth.block_number)
    assert miner._queued_prompt(task_id, head) == "Name three colours of the rainbow."
    assert miner._queued_prompt(task_id + 10**6, head) is None  # no such task: nothing found
    assert int(queued.receipt["blockNumber"]) <= head
