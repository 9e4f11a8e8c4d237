"""Unvalidated sessions through the real `openai` package: miners sample, nothing is judged,
every answering miner is paid once, and the answer says it is unvalidated.

The checks read the chain (the session's validation level, the revealed answers, TaskSettled)
and the oracle's own record, not the router's word.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from chain.client import ChainClient
from engine.node.user_session import VALIDATION_LEVEL_NONE
from tests.router.conftest import MODEL, RoutedNetwork
from tests.router.test_router_load import _settled

pytestmark = [pytest.mark.llama, pytest.mark.timeout(300)]
POEM = [{"role": "user", "content": "Write one line of a poem about the sea."}]


def test_temperature_on_a_validated_session_is_refused_and_says_how_to_sample(
    routed: RoutedNetwork,
) -> None:
    before = len(routed.router.journal.all())
    client = routed.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=POEM, temperature=0.8)  # type: ignore[arg-type]
    message = caught.value.body["message"]  # type: ignore[index]
    assert caught.value.status_code == 400
    assert "validated session" in message and "greedy" in message
    assert ":unvalidated" in message and '"validated": false' in message  # the way out
    bad: list[dict[str, Any]] = [
        {"model": MODEL + ":unvalidated", "extra_body": {"cortensor": {"validated": True}}},
        {"model": MODEL + ":unvalidated", "temperature": 2.5},
        {"model": MODEL + ":unvalidated", "top_p": 0},
        {"model": MODEL, "extra_body": {"cortensor": {"validated": "no"}}},
    ]
    for kwargs in bad:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(messages=POEM, **kwargs)  # type: ignore[arg-type]
    assert len(routed.router.journal.all()) == before  # nothing submitted


def _revealed(client: ChainClient, task_id: int) -> dict[str, str]:
    head = int(client.web3.eth.block_number)
    events = client.queue.cursor("TaskAnswer", 0, taskId=task_id).poll(head)
    return {str(e.args["miner"]).lower(): str(e.args["answer"]) for e in events}


def test_an_unvalidated_session_samples_and_pays_every_answering_miner_once(
    routed: RoutedNetwork,
) -> None:
    chain_client = routed.network.chain.client()  # type: ignore[union-attr]
    oracle = routed.network.oracle
    assert oracle is not None
    start = int(chain_client.web3.eth.block_number)
    client = routed.openai()
    # Both ways of asking: the model id's suffix (k = 2) and the extension field (default k).
    by_suffix = client.chat.completions.create(
        model=MODEL + ":unvalidated",
        messages=POEM,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=1.5,
        seed=1,
        extra_body={"cortensor": {"redundancy": 2}},
    )
    by_field = client.chat.completions.create(
        model=MODEL,
        messages=POEM,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=1.5,
        seed=2,
        extra_body={"cortensor": {"validated": False}},
    )
    price = routed.router.settings.price_wei
    texts = []
    for reply, seed, k in ((by_suffix, 1, 2), (by_field, 2, 1)):
        ext = reply.model_extra["cortensor"]  # type: ignore[index]
        text = reply.choices[0].message.content
        assert text
        texts.append(text)
        assert ext["validated"] is False
        assert ext["sampling"] == {"temperature": 1.5, "top_p": 1.0, "seed": seed}
        session = chain_client.queue.call("sessions", ext["session_id"])
        assert int(session[2]) == VALIDATION_LEVEL_NONE and int(session[3]) == k
        # every miner that answered passed (score 100: answered, not judged) and is paid
        assert len(ext["miners"]) == k
        assert all(m["passed"] and m["score"] == 100 for m in ext["miners"])
        assert int(ext["spent_wei"]) == k * (price // k)
        revealed = _revealed(chain_client, ext["task_id"])
        winner = ext["miners"][ext["consensus_index"]]["address"].lower()
        assert text == revealed[winner]
        # no model ran on the oracle's side: nothing judged, no verdict for the pool window
        assert oracle.user_results[ext["task_id"]].judgement is None
        if k == 2:
            # the seed reached both miners: one build, one seed, one sampled text
            assert len(set(revealed.values())) == 1
    # different seeds, different samples; and not what greedy decoding gives
    assert texts[0] != texts[1]
    greedy = client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=24)  # type: ignore[arg-type]
    assert greedy.model_extra["cortensor"]["validated"] is True  # type: ignore[index]
    assert greedy.choices[0].message.content not in texts
    # nothing paid twice: each task settled once, each of its miners once
    tasks = [r.model_extra["cortensor"]["task_id"] for r in (by_suffix, by_field)]  # type: ignore[index]
    paid = _settled(chain_client, tasks, start)  # asserts one TaskSettled per task
    assert sorted(paid) == sorted(tasks)
    assert paid[tasks[0]] == 2 * (price // 2) and paid[tasks[1]] == price
    head = int(chain_client.web3.eth.block_number)
    for event in chain_client.payment.cursor("TaskSettled", start).poll(head):
        miners = [str(m).lower() for m in event.args["paid"]]
        assert len(miners) == len(set(miners))
    assert chain_client.payment.escrowed_of(routed.router.address) == 0
