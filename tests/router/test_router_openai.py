"""The router through the real `openai` package (and curl) on the embedded network.

Each request is a real user task: submitted on the in-process chain, answered by llama.cpp
miners, validated by the oracle; the answers are checked against what the chain and the miners
themselves recorded, not against the router's own word.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from chain.wrappers import TaskState
from engine.inference.types import SamplingParams
from engine.protocol import TaskKind
from engine.state.events import InferenceFinished
from tests.router.conftest import ANSWER_LIMIT, MODEL, RoutedNetwork

pytestmark = [pytest.mark.llama, pytest.mark.timeout(300)]
QUESTION = "Name one planet of the solar system."


def _raw(
    routed: RoutedNetwork,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(routed.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _oversized(routed: RoutedNetwork) -> tuple[int, bytes]:
    """Announce a body over the limit: the router answers 413 before reading any of it."""
    url = urlsplit(routed.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(1024 * 1024 + 1))
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _error(raw: bytes) -> dict[str, Any]:
    document = json.loads(raw)
    assert set(document["error"]) >= {"message", "type", "code"}
    return document["error"]  # type: ignore[no-any-return]


def test_chat_completion_is_a_validated_task_with_its_chain_record(routed: RoutedNetwork) -> None:
    reader = routed.network.bus.subscribe(maxsize=100_000, name="test-chat")
    client = routed.openai()
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=24,
        temperature=0,
        extra_body={"cortensor": {"redundancy": 3}},
    )
    text = reply.choices[0].message.content
    assert reply.object == "chat.completion" and text
    ext = reply.model_extra["cortensor"]
    assert len(ext["miners"]) == 3
    assert {m["address"] for m in ext["miners"]} == {m.address for m in routed.network.miners}
    assert all(0 <= m["score"] <= 100 for m in ext["miners"])
    index = ext["consensus_index"]
    assert index is not None and ext["miners"][index]["passed"]
    assert len(ext["tx_hashes"]) >= 9  # submit, assign, 3 precommits, 3 reveals, validate
    assert 0 < ext["router_gas_used"] < ext["gas_used"]
    assert int(ext["price_wei"]) == routed.router.settings.price_wei
    passed = sum(m["passed"] for m in ext["miners"])
    assert int(ext["spent_wei"]) == passed * (routed.router.settings.price_wei // 3)
    queue = routed.network.chain.client().queue  # type: ignore[union-attr]
    assert queue.state(ext["task_id"]) == TaskState.VALIDATED
    # usage: counted as the miners' own llama.cpp workers counted the same prompt
    runs = [
        e
        for e in reader.drain()
        if isinstance(e, InferenceFinished)
        and e.task_kind is TaskKind.USER
        and e.task_id == ext["task_id"]
    ]
    reader.close()
    assert runs, "no miner reported this task's inference"
    assert reply.usage.prompt_tokens == runs[0].prompt_tokens
    assert abs(reply.usage.completion_tokens - runs[0].generated_tokens) <= 2
    assert reply.usage.completion_tokens <= 24 + 2
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_chat_sends_openai_chunks_of_the_validated_answer(routed: RoutedNetwork) -> None:
    client = routed.openai()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 8 + 2
    ext = chunks[-1].model_extra["cortensor"]
    record = routed.router.journal.get(ext["request_id"])
    assert record is not None and record.state.value == "answered"
    assert record.outcome["task_id"] == ext["task_id"]
    # the streamed text is the consensus answer the chain holds
    assert text and text == _consensus_answer(routed, ext)


def _consensus_answer(routed: RoutedNetwork, ext: dict[str, Any]) -> str:
    queue = routed.network.chain.client().queue  # type: ignore[union-attr]
    head = int(queue.contract.w3.eth.block_number)
    answers = queue.cursor("TaskAnswer", 0, taskId=ext["task_id"]).poll(head)
    winner = ext["miners"][ext["consensus_index"]]["address"].lower()
    return next(str(e.args["answer"]) for e in answers if str(e.args["miner"]).lower() == winner)


def test_completions_and_models(routed: RoutedNetwork) -> None:
    client = routed.openai()
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=10)
    assert reply.object == "text_completion" and reply.choices[0].text
    assert reply.model_extra["cortensor"]["task_id"] > 0
    assert reply.usage.completion_tokens <= 12
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL, MODEL + ":unvalidated"]
    assert [m.model_extra["cortensor"]["validated"] for m in models] == [True, False]
    assert models[0].model_extra["cortensor"]["miners"] == 3
    assert models[0].model_extra["cortensor"]["precisions"] == ["quantized"]


def test_curl_sees_server_sent_events_ending_with_done(routed: RoutedNetwork) -> None:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 6,
            "stream": True,
        }
    )
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-N",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            routed.url + "/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=200,
        check=True,
    )
    head, _, stream = result.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: text/event-stream" in head.lower()
    events = stream.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ") and "\n" not in event
        assert json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_bad_requests_get_clear_openai_errors_and_nothing_is_submitted(
    routed: RoutedNetwork,
) -> None:
    before = len(routed.router.journal.all())
    client = routed.openai()
    chat = [{"role": "user", "content": "Hi"}]
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"model": "no-such-model", "messages": chat}, openai.NotFoundError, "model_not_found"),
        (
            {"model": MODEL, "messages": chat, "max_tokens": ANSWER_LIMIT + 1},
            openai.BadRequestError,
            "invalid_request",
        ),
        (
            {"model": MODEL, "messages": chat, "temperature": 0.7},
            openai.BadRequestError,
            "invalid_request",
        ),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "word " * 2500}]},
            openai.BadRequestError,
            "context_length_exceeded",
        ),
        (
            {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
            openai.BadRequestError,
            "invalid_request",
        ),
    ]
    for kwargs, error, code in cases:
        with pytest.raises(error) as caught:
            client.chat.completions.create(**kwargs)
        assert caught.value.body["code"] == code, kwargs  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError, match="greedy"):
        client.chat.completions.create(model=MODEL, messages=chat, temperature=1)
    status, _, raw = _raw(
        routed, "POST", "/v1/chat/completions", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400 and _error(raw)["code"] == "invalid_json"
    status, raw = _oversized(routed)
    assert status == 413 and _error(raw)["code"] == "body_too_large"
    status, _, raw = _raw(routed, "GET", "/v1/nothing")
    assert status == 404 and "/v1/chat/completions" in _error(raw)["message"]
    assert len(routed.router.journal.all()) == before


def test_validate_judges_an_answer_made_elsewhere(routed: RoutedNetwork) -> None:
    oracle = routed.network.oracle
    assert oracle is not None
    prompt = "What colour is grass?"
    honest = oracle.validator.chat.generate(prompt, SamplingParams(max_tokens=32)).text
    verdicts = {}
    for name, answer in (("honest", honest), ("canned", "I like trains and the number 7.")):
        status, _, raw = _raw(
            routed,
            "POST",
            "/api/v1/validate",
            json.dumps({"prompt": prompt, "answer": answer, "max_tokens": 32}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, raw
        verdicts[name] = json.loads(raw)
    assert verdicts["honest"]["passed"] and verdicts["honest"]["score"] >= 60
    assert verdicts["honest"]["top1_agreement"] >= 0.8
    assert not verdicts["canned"]["passed"] and verdicts["canned"]["score"] < 60
    assert verdicts["canned"]["failed_checks"]


def test_health_and_metrics(routed: RoutedNetwork) -> None:
    status, _, raw = _raw(routed, "GET", "/health")
    health = json.loads(raw)
    assert status == 200 and health["status"] == "ok" and health["rpc"] == "ok"
    assert health["router"] == routed.router.address and health["block"] > 0
    status, headers, raw = _raw(routed, "GET", "/metrics")
    text = raw.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "cortensor_router_requests_total" in text
    assert "cortensor_router_latency_seconds_bucket" in text
    assert "cortensor_router_in_flight" in text
