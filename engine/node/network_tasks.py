"""What network tasks ask of miners: the creator's topic, the preparer's challenge prompts.

A network task exercises real inference end to end. The oracle's seed picks a domain; the
creator miner asks its model for a topic in that domain; the preparer miner turns the topic into
challenge prompts; the selected miners answer them. Small models ramble, so parsing is lenient
and always falls back to something deterministic derived from the seed: a bad creator or
preparer never stalls the session.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DOMAINS = (
    "astronomy",
    "cooking",
    "geography",
    "history",
    "mathematics",
    "music",
    "biology",
    "chemistry",
    "computing",
    "economics",
    "literature",
    "sports",
    "weather",
    "languages",
    "architecture",
    "medicine",
)
MAX_TOPIC_CHARS = 80
MAX_PROMPT_CHARS = 200
MAX_PROMPTS = 16  # a preparer writes prompts_per_session (3); more are never read
# The separator the preparer's prompts travel with on chain (one string, calldata-cheap).
PROMPT_SEPARATOR = "\n"


@dataclass(frozen=True)
class ChatRequest:
    """A chat request for the runtime: messages and a token budget (greedy decoding)."""

    system: str
    user: str
    max_tokens: int


def domain_for(seed: bytes) -> str:
    return DOMAINS[int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") % len(DOMAINS)]


def topic_request(seed: bytes) -> ChatRequest:
    domain = domain_for(seed)
    return ChatRequest(
        system="You are a helpful assistant. Answer with a short phrase only.",
        user=f"Name one specific topic about {domain} that a student could ask about.",
        max_tokens=24,
    )


def parse_topic(text: str, seed: bytes) -> str:
    """The first clean line of the model's answer, or the domain itself if there is none."""
    for line in text.splitlines():
        cleaned = _clean(line)
        if 3 <= len(cleaned) <= MAX_TOPIC_CHARS:
            return cleaned
    return domain_for(seed)


def prompts_request(topic: str, count: int) -> ChatRequest:
    return ChatRequest(
        system="You are a helpful assistant.",
        user=f"Write {count} short questions about {topic}, one per line.",
        max_tokens=24 * count + 16,
    )


def parse_prompts(text: str, topic: str, count: int) -> list[str]:
    """Up to `count` distinct questions from the model's list, topped up with fixed templates."""
    prompts: list[str] = []
    for line in text.splitlines():
        cleaned = _clean(line)
        if len(cleaned) >= 8 and cleaned not in prompts:
            prompts.append(cleaned[:MAX_PROMPT_CHARS])
        if len(prompts) == count:
            return prompts
    fallbacks = [f"What is {topic}?", f"Why does {topic} matter?", f"Explain {topic} simply."]
    for extra in fallbacks:
        if len(prompts) == count:
            break
        if extra not in prompts:
            prompts.append(extra[:MAX_PROMPT_CHARS])
    return prompts


def encode_prompts(prompts: list[str]) -> str:
    return PROMPT_SEPARATOR.join(p.replace(PROMPT_SEPARATOR, " ") for p in prompts)


def decode_prompts(text: str) -> list[str]:
    """The prompts a preparer put on chain, capped as `parse_prompts` caps its own: calldata
    is cheap, and every miner and oracle keeps these in memory while the session runs."""
    prompts = [p for p in text.split(PROMPT_SEPARATOR, MAX_PROMPTS) if p.strip()]
    return [p[:MAX_PROMPT_CHARS] for p in prompts[:MAX_PROMPTS]]


def prompt_for_miner(prompts: list[str], session_id: int, index: int) -> str:
    """Which challenge prompt a selected miner answers: every miner the same one, so answers
    can be compared with each other and with the validator's own (redundancy is the point)."""
    if not prompts:
        raise ValueError("no prompts to answer")
    del index  # every selected miner answers the same prompt
    return prompts[session_id % len(prompts)]


_LEADING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.)]|Topic:|Question:)\s*", re.IGNORECASE)


def _clean(line: str) -> str:
    text = _LEADING.sub("", line).strip().strip('"').strip("'").strip()
    return re.sub(r"\s+", " ", text)
