"""Network-task content: lenient parsing of small models' output, deterministic fallbacks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.node.network_tasks import (
    DOMAINS,
    decode_prompts,
    domain_for,
    encode_prompts,
    parse_prompts,
    parse_topic,
    prompt_for_miner,
    prompts_request,
    topic_request,
)


def test_domain_is_deterministic_and_spread() -> None:
    assert domain_for(b"seed-1") == domain_for(b"seed-1")
    picked = {domain_for(i.to_bytes(4, "big")) for i in range(200)}
    assert len(picked) >= len(DOMAINS) - 2


def test_topic_request_names_the_domain() -> None:
    seed = b"abc"
    assert domain_for(seed) in topic_request(seed).user


def test_parse_topic_strips_list_markers_and_quotes() -> None:
    assert parse_topic('\n1. "The water cycle"\nmore text', b"s") == "The water cycle"
    assert parse_topic("Topic: Black holes", b"s") == "Black holes"


def test_parse_topic_falls_back_to_the_domain() -> None:
    assert parse_topic("\n\n  \n", b"zz") == domain_for(b"zz")
    assert parse_topic("x" * 500, b"zz") == domain_for(b"zz")


def test_parse_prompts_takes_distinct_lines_and_tops_up() -> None:
    text = "1. What is a comet?\n2. What is a comet?\n- How far is the Moon from Earth?\n"
    prompts = parse_prompts(text, "astronomy", 3)
    assert prompts[:2] == ["What is a comet?", "How far is the Moon from Earth?"]
    assert len(prompts) == 3
    assert prompts[2] == "What is astronomy?"


def test_prompts_request_budget_grows_with_count() -> None:
    assert prompts_request("t", 4).max_tokens > prompts_request("t", 1).max_tokens


@given(st.lists(st.text(min_size=1, max_size=50), min_size=1, max_size=5))
def test_prompts_round_trip_through_chain_encoding(prompts: list[str]) -> None:
    cleaned = [p.replace("\n", " ") for p in prompts if p.replace("\n", " ").strip()]
    assert decode_prompts(encode_prompts(cleaned)) == cleaned


def test_every_selected_miner_answers_the_same_prompt() -> None:
    prompts = ["a?", "b?", "c?"]
    assert {prompt_for_miner(prompts, 7, i) for i in range(5)} == {prompts[7 % 3]}
