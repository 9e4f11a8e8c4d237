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
