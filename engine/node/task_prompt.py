"""What a user task's prompt string on chain means: plain text, or chat messages and a limit.

`SessionQueue.submitTask` carries one string. `ask` sends the question as plain text (the miner
puts it through the model's chat template as one user message). The router sends a chat
conversation (system, user, assistant turns) and the client's `max_tokens`, so it encodes them
in an envelope: a marker line, then JSON. Miners answer and the oracle validates the decoded
messages under the same limit (never above the node's own `answer_max_tokens`), so every side
computes and judges the same greedy answer. Anything not in the envelope's exact form is plain
text: a prompt that merely looks like JSON is still a question.

A task of an unvalidated session may also carry `sampling` (temperature, top_p, seed): its
miners sample with them. A miner applies them only when the task's session is unvalidated
(validation level 0 on chain); in a validated session every side stays greedy whatever the
envelope says, since the oracle compares each answer with its own greedy one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from engine.inference.types import DEFAULT_SEED, SamplingParams

MARKER = "cortensor-chat/1\n"
ROLES = frozenset({"system", "user", "assistant"})

Messages = tuple[dict[str, str], ...]
MAX_TEMPERATURE = 2.0  # OpenAI's range
MAX_SEED = 2**32 - 1


class PromptFormatError(ValueError):
    """Messages that cannot go into a task (unknown role, content not text, none at all)."""


@dataclass(frozen=True)
class Sampling:
    """How the miners of an unvalidated session sample (temperature 0: greedy)."""

    temperature: float
    top_p: float = 1.0
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_p, self.seed)

    def to_json(self) -> dict[str, float | int]:
        return {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}


def check_sampling(temperature: object, top_p: object, seed: object) -> None:
    """Raise PromptFormatError unless these are a temperature, top_p and seed a miner takes."""
    t, p = _number(temperature), _number(top_p)
    if t is None or not 0 <= t <= MAX_TEMPERATURE:
        raise PromptFormatError(f"temperature must be a number from 0 to {MAX_TEMPERATURE:g}")
    if p is None or not 0 < p <= 1:
        raise PromptFormatError("top_p must be a number above 0 and at most 1")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise PromptFormatError(f"seed must be an integer from 0 to {MAX_SEED}")


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class TaskPrompt:
    """A decoded task prompt: what the model is given and the answer's token limit, if any."""

    messages: Messages | None  # None: plain text in `text`
    text: str
    max_tokens: int | None = None
    sampling: Sampling | None = None

    @property
    def model_input(self) -> str | Messages:
        """What the runtime takes: a string (one user message) or the whole conversation."""
        return self.messages if self.messages is not None else self.text

    def answer_limit(self, node_limit: int) -> int:
        """The answer's token limit on a node that allows at most `node_limit`."""
        if self.max_tokens is None:
            return node_limit
        return max(1, min(self.max_tokens, node_limit))

    def sampling_params(self, node_limit: int, validated: bool) -> SamplingParams:
        """What a miner generates with: greedy (the fixed seed) unless the session is
        unvalidated and the task asks to sample."""
        limit = self.answer_limit(node_limit)
        if validated or self.sampling is None or self.sampling.temperature == 0:
            return SamplingParams(max_tokens=limit)
        s = self.sampling
        return SamplingParams(
            max_tokens=limit, temperature=s.temperature, top_p=s.top_p, seed=s.seed
        )


def check_messages(messages: Sequence[object]) -> Messages:
    """Messages as the runtime takes them: role and text content, at least one of them."""
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise PromptFormatError(f"messages[{index}] must be an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise PromptFormatError(
                f"messages[{index}].role must be one of {', '.join(sorted(ROLES))}"
            )
        if isinstance(content, list):  # OpenAI's content parts: only text parts are served
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            if not texts or any(p.get("type") != "text" for p in content if isinstance(p, dict)):
                raise PromptFormatError(f"messages[{index}].content: only text parts are served")
            content = "".join(str(t) for t in texts)
        if not isinstance(content, str):
            raise PromptFormatError(f"messages[{index}].content must be text")
        checked.append({"role": str(role), "content": content})
    if not checked:
        raise PromptFormatError("messages must hold at least one message")
    return tuple(checked)


def encode_chat(
    messages: Sequence[dict[str, str]], max_tokens: int | None, sampling: Sampling | None = None
) -> str:
    """The prompt string for a chat task (deterministic: the same request, the same bytes)."""
    body: dict[str, object] = {"messages": list(check_messages(messages))}
    if max_tokens is not None:
        body["max_tokens"] = int(max_tokens)
    if sampling is not None:
        body["sampling"] = sampling.to_json()
    return MARKER + json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_text(prompt: str, max_tokens: int | None, sampling: Sampling | None = None) -> str:
    """A plain prompt; with a token limit or sampling it needs the envelope to carry them."""
    if max_tokens is None and sampling is None and not prompt.startswith(MARKER):
        return prompt
    return encode_chat([{"role": "user", "content": prompt}], max_tokens, sampling)


def decode(raw: str) -> TaskPrompt:
    """The prompt a miner answers and an oracle judges; plain text unless a valid envelope."""
    if not raw.startswith(MARKER):
        return TaskPrompt(None, raw)
    try:
        body = json.loads(raw[len(MARKER) :])
        messages = check_messages(body["messages"])
        limit = body.get("max_tokens")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise PromptFormatError("max_tokens must be an integer")
        sampling = _sampling(body.get("sampling"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return TaskPrompt(None, raw)
    text = "\n".join(m["content"] for m in messages)
    return TaskPrompt(messages, text, limit, sampling)


def _sampling(found: object) -> Sampling | None:
    if found is None:
        return None
    if not isinstance(found, dict):
        raise PromptFormatError("sampling must be an object")
    return Sampling(
        temperature=found["temperature"],
        top_p=found.get("top_p", 1.0),
        seed=found.get("seed", DEFAULT_SEED),
    )
