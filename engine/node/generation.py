"""The miner's answers: one generation per task, streamed, retried once after a crash; greedy,
unless the task of an unvalidated user session asks to sample.

What the miner asks of its runtime (`ChatModel`), the live tokens/s the views plot
(`TokenMeter`), and the events around each answer (`InferenceFinished`, a WORKER_CRASH alert).
A cut-off answer (the node is stopping) is refused here, so it never reaches the journal.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Protocol

from chain.errors import ChainError
from engine.errors import ModelError, WorkerCrashedError
from engine.inference.runtime import Prompt
from engine.inference.types import BenchResult, GenerationResult, SamplingParams, TokenEvent
from engine.protocol import TaskKind
from engine.state.events import (
    Alert,
    AlertKind,
    Event,
    InferenceFinished,
    Severity,
    TokenProgress,
)

log = logging.getLogger(__name__)

TOKEN_EVENT_INTERVAL_S = 0.25
INTERRUPTED = frozenset({"cancelled", "killed"})  # finish reasons of a request cut off by a stop


class AnswerInterrupted(ChainError):
    """The node stopped while answering: no answer goes out, and it is a stop, not a fault."""


class ChatModel(Protocol):
    """What the miner needs of the runtime (InferenceWorker satisfies it)."""

    def generate(
        self, prompt: Prompt, params: SamplingParams | None = None
    ) -> GenerationResult: ...


class BenchableModel(ChatModel, Protocol):
    """A runtime that can also benchmark itself (InferenceWorker); test doubles may not."""

    def bench(self, prompt: str = ..., runs: int = ..., gen_tokens: int = ...) -> BenchResult: ...


class Generator:
    """Answers one prompt on the served model, publishing its progress and figures.

    `session_model(session_id)` reads which model a user session asks for (from the chain),
    only when the runtime serves several (engine/host/model_pool.py)."""

    def __init__(
        self,
        chat: ChatModel,
        publish: Callable[[Event], None],
        session_model: Callable[[int], bytes],
    ) -> None:
        self._publish = publish
        self._session_model = session_model
        self.use(chat)

    def use(self, chat: ChatModel) -> None:
        """Serve `chat` from the next answer on (a re-plan's model swap)."""
        self.chat = chat
        self._streams = _streams_tokens(chat)

    def generate(
        self,
        session_id: int,
        prompt: Prompt,
        max_tokens: int,
        kind: TaskKind = TaskKind.NETWORK,
        task_id: int = 0,
        params: SamplingParams | None = None,
    ) -> GenerationResult:
        """`params` default to greedy; an unvalidated user session's task may sample."""
        self._select_model(session_id if kind is TaskKind.USER else None)
        params = params or SamplingParams(max_tokens=max_tokens)
        progress = TokenMeter(
            lambda tokens, rate: self._publish(
                TokenProgress(
                    task_kind=kind,
                    session_id=session_id,
                    task_id=task_id,
                    tokens=tokens,
                    tokens_per_s=rate,
                )
            )
        )
        try:
            result = self._generate_once_more_after_a_crash(prompt, params, progress)
        except ModelError as exc:
            self._publish(
                Alert(
                    kind=AlertKind.WORKER_CRASH,
                    severity=Severity.ERROR,
                    message=f"inference failed: {exc}",
                )
            )
            raise ChainError(f"no answer for session {session_id}: {exc}") from exc
        if result.finish_reason in INTERRUPTED:
            # The node is stopping: a cut-off answer must never reach the journal (it would be
            # revealed after a restart and fail validation as a truncated one).
            raise AnswerInterrupted(
                f"no answer for session {session_id}: generation {result.finish_reason}"
            )
        self._publish(_finished(result, kind, session_id, task_id))
        return result

    def _select_model(self, user_session: int | None) -> None:
        """A runtime serving several models loads the one a user session asks for; network
        tasks use the primary."""
        select = getattr(self.chat, "select", None)
        if select is None:
            return
        model = None
        if user_session is not None:
            model = self._session_model(user_session)
        select(model)

    def _generate_once_more_after_a_crash(
        self, prompt: Prompt, params: SamplingParams, progress: TokenMeter
    ) -> GenerationResult:
        """A worker that dies mid-answer is restarted by the next request: ask once more, so
        the task is still answered in its window. Greedy decoding gives the same answer."""
        try:
            return self._generate_streaming(prompt, params, progress)
        except WorkerCrashedError as exc:
            log.warning("the inference worker died mid-answer (%s); asking again", exc)
            progress.restart()
            return self._generate_streaming(prompt, params, progress)

    def _generate_streaming(
        self, prompt: Prompt, params: SamplingParams, progress: TokenMeter
    ) -> GenerationResult:
        """Live tokens/s for the views while the answer streams, where the runtime streams."""
        if not self._streams:
            return self.chat.generate(prompt, params)
        generate: Callable[..., GenerationResult] = self.chat.generate
        return generate(prompt, params, on_token=progress.on_token)


def _finished(
    result: GenerationResult, kind: TaskKind, session_id: int, task_id: int
) -> InferenceFinished:
    f = result.figures
    return InferenceFinished(
        task_kind=kind,
        session_id=session_id,
        task_id=task_id,
        prompt_tokens=f.prompt_tokens,
        generated_tokens=f.generated_tokens,
        ttft_s=f.ttft_s,
        tokens_per_s=f.tokens_per_s,
        stop_reason="eos" if result.finish_reason == "stop" else result.finish_reason,
    )


def _streams_tokens(chat: object) -> bool:
    """Whether the runtime's generate takes `on_token` (InferenceWorker does; doubles may not)."""
    generate = getattr(chat, "generate", None)
    try:
        return generate is not None and "on_token" in inspect.signature(generate).parameters
    except (TypeError, ValueError):
        return False


class TokenMeter:
    """Turns streamed tokens into `tokens` events, a few a second (a view plots them)."""

    def __init__(
        self,
        publish: Callable[[int, float], None],
        every_s: float = TOKEN_EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._every_s = every_s
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        self._first: float | None = None
        self._last_sent = 0.0

    def on_token(self, event: TokenEvent) -> None:
        now = self._clock()
        if self._first is None:
            self._first, self._last_sent = now, now  # rate counts from the first token
            return
        if now - self._last_sent < self._every_s:
            return
        self._last_sent = now
        self._publish(event.index + 1, event.index / (now - self._first))
