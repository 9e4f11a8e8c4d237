"""The on-chain form of a router task's prompt: what miners answer and the oracle judges."""

from __future__ import annotations

import pytest

from engine.node import task_prompt
from engine.node.task_prompt import PromptFormatError


def test_chat_messages_and_limit_round_trip() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ü"}]
    raw = task_prompt.encode_chat(messages, 16)
    assert raw == task_prompt.encode_chat(messages, 16)  # deterministic bytes
    decoded = task_prompt.decode(raw)
    assert decoded.model_input == tuple(messages)
    assert decoded.answer_limit(128) == 16
    assert decoded.answer_limit(8) == 8  # never above the node's own limit


def test_plain_text_stays_plain_and_lookalikes_are_text() -> None:
    assert task_prompt.decode("What is 2+2?").model_input == "What is 2+2?"
    assert task_prompt.decode("What is 2+2?").answer_limit(128) == 128
    fake = task_prompt.MARKER + "{not json"
    assert task_prompt.decode(fake).model_input == fake
    wrong_role = task_prompt.MARKER + '{"messages": [{"role": "wizard", "content": "x"}]}'
    assert task_prompt.decode(wrong_role).model_input == wrong_role
    assert task_prompt.encode_text("plain", None) == "plain"
    assert task_prompt.decode(task_prompt.encode_text("plain", 5)).answer_limit(128) == 5


def test_content_parts_and_bad_messages() -> None:
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert task_prompt.check_messages(parts) == ({"role": "user", "content": "ab"},)
    for bad in (
        [],
        ["hello"],
        [{"role": "user", "content": 3}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ):
        with pytest.raises(PromptFormatError):
            task_prompt.check_messages(bad)


def test_sampling_travels_in_the_envelope_and_applies_only_unvalidated() -> None:
    sampling = task_prompt.Sampling(temperature=0.9, top_p=0.8, seed=7)
    raw = task_prompt.encode_text("Tell me a story.", 16, sampling)
    decoded = task_prompt.decode(raw)
    assert decoded.sampling == sampling and decoded.answer_limit(128) == 16
    sampled = decoded.sampling_params(128, validated=False)
    assert (sampled.temperature, sampled.top_p, sampled.seed) == (0.9, 0.8, 7)
    assert sampled.max_tokens == 16
    # a validated session stays greedy whatever the envelope says
    assert decoded.sampling_params(128, validated=True).greedy
    assert task_prompt.decode(task_prompt.encode_text("x", 4)).sampling_params(128, False).greedy


def test_bad_sampling_is_refused_and_a_bad_envelope_is_plain_text() -> None:
    for temperature, top_p, seed in ((-1, 1.0, 1), (2.5, 1.0, 1), (1.0, 0, 1), (1.0, 1.0, -1)):
        with pytest.raises(PromptFormatError):
            task_prompt.Sampling(temperature, top_p, seed)
    with pytest.raises(PromptFormatError):
        task_prompt.check_sampling(True, 1.0, 1)  # a boolean is not a temperature
    raw = task_prompt.MARKER + (
        '{"messages":[{"role":"user","content":"x"}],"sampling":{"temperature":"hot"}}'
    )
    decoded = task_prompt.decode(raw)
    assert decoded.model_input == raw and decoded.sampling is None
