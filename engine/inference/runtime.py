"""The llama.cpp runtime, contained in a worker process; the one door the node uses for inference.

Why a process: native code that crashes, aborts or is killed for memory takes the worker down,
not the node; a stop is immediate (the worker can be killed, a thread cannot); and the worker's
memory is returned to the system when it ends.

API (every method blocks the calling thread; `cancel()` and `kill()` may come from any thread):

    worker = InferenceWorker(model_path, LoadSettings(n_ctx=2048), kind="auto")
    report = worker.start()                     # spawn + load; LoadReport (what was changed, why)
    result = worker.generate("Capital of France?")            # GenerationResult, greedy, seed 42
    stream = worker.stream(messages, SamplingParams(max_tokens=64, deadline_s=10))
    for event in stream: ...                    # TokenEvent(index, token_id, text)
    stream.result                               # GenerationResult after the loop ends
    worker.cancel()                             # ends the current stream after <= 1 token
    worker.kill()                               # hard stop: SIGKILL; next request restarts it
    worker.score_likelihood(prompt, answer)     # LikelihoodResult (per-token gap to the top, rank)
    worker.score_many(prompt, [a, b, c])        # the same for several answers, prefixes shared
    worker.embed(["a", "b"])                    # embedding models: unit vectors (mean pooled)
    worker.bench()                              # BenchResult (median tokens/s, peak RSS, sha256)
    worker.load(other_path, settings)           # switch model; a bad file leaves the old one
    worker.close()

Prompts: a string is sent as one user message through the model's chat template (from the
GGUF); a list of {"role", "content"} dicts is a conversation; `raw=True` skips the template.
Defaults: greedy (temperature 0) with seed 42, 256 new tokens, no deadline.

Loading: `settings` are the fit's `LoadSettings` (batch/ubatch 512, f16 KV, mmap, as the memory
estimate assumes). If the load runs out of memory (llama.cpp cannot allocate, or the worker is
killed during the load), it is retried with half the context, down to `min_ctx`, then with half
the GPU layers, down to 0; each step is logged and recorded in `LoadReport.adjustments`.

Crashes: a worker that dies is recorded (`deaths`: exit code or signal, what it was doing), the
request raises `WorkerCrashedError`, and the next request starts a fresh worker after a backoff
(0.5 s doubling to 30 s, reset by a successful request) that reloads the last good model.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from engine.errors import (
    CorruptModelError,
    DeadlineExceededError,
    InferenceRequestError,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    OutOfMemoryError,
    UnsupportedModelError,
    WorkerCrashedError,
)
from engine.inference.types import (
    BenchResult,
    GenerationFigures,
    GenerationResult,
    LikelihoodResult,
    LoadReport,
    SamplingParams,
    TokenEvent,
    TokenScore,
    WorkerDeath,
)
from profiler.load_settings import LoadSettings

__all__ = [
    "BENCH_PROMPT",
    "BenchResult",
    "GenerationFigures",
    "GenerationResult",
    "GenerationStream",
    "InferenceWorker",
    "LikelihoodResult",
    "LoadReport",
    "SamplingParams",
    "TokenEvent",
    "TokenScore",
    "WorkerDeath",
    "WorkerOptions",
    "smaller_settings",
]

log = logging.getLogger(__name__)
worker_log = logging.getLogger("engine.worker")

BENCH_PROMPT = (
    "Explain in a few sentences why the sky is blue, then list three everyday examples of light "
    "scattering, and finish with one sentence about sunsets."
)
Prompt = str | Sequence[dict[str, str]]

_ERRORS: dict[str, type[ModelError]] = {
    "oom": OutOfMemoryError,
    "corrupt": CorruptModelError,
    "missing": ModelNotFoundError,
    "unsupported": UnsupportedModelError,
    "load": ModelLoadError,
    "request": InferenceRequestError,
}


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker process runs (not how the model loads: that is LoadSettings)."""

    min_ctx: int = 256  # the load-retry ladder stops halving the context here
    start_timeout_s: float = 60.0
    load_timeout_s: float = 300.0
    request_grace_s: float = 5.0  # past a request's deadline, wait this long, then kill
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    address_space_limit: int | None = None  # RLIMIT_AS for the worker (tests, hard caps)
    forward_log_level: int = logging.WARNING  # llama.cpp lines at or above this reach our log


def smaller_settings(settings: LoadSettings, min_ctx: int) -> tuple[LoadSettings, str] | None:
    """The next step down after an out-of-memory load, and why; None when nothing is left."""
    if settings.n_ctx > min_ctx:
        smaller = max(min_ctx, settings.n_ctx // 2)
        return (
            replace(settings, n_ctx=smaller),
            f"context {settings.n_ctx} -> {smaller} tokens: the load ran out of memory",
        )
    if settings.n_gpu_layers > 0:
        fewer = settings.n_gpu_layers // 2
        return (
            replace(settings, n_gpu_layers=fewer),
            f"GPU layers {settings.n_gpu_layers} -> {fewer}: out of memory at the smallest context",
        )
    return None


class GenerationStream:
    """Iterate for TokenEvents; `result` holds the GenerationResult once the iteration ends."""

    def __init__(self, events: Iterator[TokenEvent], holder: list[GenerationResult]) -> None:
        self._events = events
        self._holder = holder

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._events

    @property
    def result(self) -> GenerationResult:
        if not self._holder:
            for _ in self._events:
                pass
        return self._holder[0]


class InferenceWorker:
    """One model in one worker process. See the module docstring for the API."""

    def __init__(
        self,
        model_path: str | Path,
        settings: LoadSettings | None = None,
        *,
        kind: str = "auto",
        options: WorkerOptions | None = None,
    ) -> None:
        if kind not in ("auto", "chat", "embedding"):
            raise ValueError("kind must be auto, chat or embedding")
        self.model_path = str(Path(model_path).expanduser())
        self.settings = settings or LoadSettings()
        self.kind = kind
        self.options = options or WorkerOptions()
        self.deaths: list[WorkerDeath] = []
        self.load_report: LoadReport | None = None
        self._mp = multiprocessing.get_context("spawn")
        self._cancel_slot: Any = self._mp.Value("q", 0, lock=False)
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._current: int = 0
        self._killed = False
        self._failures = 0
        self._doing = "start"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> LoadReport:
        """Start the worker and load the model (with the out-of-memory ladder)."""
        with self._lock:
            if self._alive() and self.load_report is not None:
                return self.load_report
            return self._load(self.model_path, self.settings, self.kind)

    def load(
        self, model_path: str | Path, settings: LoadSettings | None = None, kind: str = "auto"
    ) -> LoadReport:
        """Switch to another model. A file that fails to load leaves the current model loaded."""
        with self._lock:
            report = self._load(str(Path(model_path).expanduser()), settings or self.settings, kind)
            self.model_path, self.settings, self.kind = report.model_path, report.requested, kind
            return report

    def close(self) -> None:
        with self._lock:
            if self._process is None:
                return
            try:
                if self._conn is not None and self._process.is_alive():
                    self._conn.send(("shutdown",))
                self._process.join(timeout=5)
            except (OSError, BrokenPipeError):
                pass
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
            self._drop_process()

    def __enter__(self) -> InferenceWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """End the current request at the next token (thread-safe; no-op when idle)."""
        self._cancel_slot.value = self._current

    def kill(self) -> None:
        """Hard stop: kill the worker process now. The running request ends with "killed"."""
        process = self._process
        if process is not None and process.is_alive():
            self._killed = True
            process.kill()

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self._process is not None else None

    # -- requests -------------------------------------------------------------------------
    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams | None = None,
        *,
        raw: bool = False,
        on_token: Callable[[TokenEvent], None] | None = None,
    ) -> GenerationResult:
        stream = self.stream(prompt, params, raw=raw)
        for event in stream:
            if on_token is not None:
                on_token(event)
        return stream.result

    def stream(
        self, prompt: Prompt, params: SamplingParams | None = None, *, raw: bool = False
    ) -> GenerationStream:
        params = params or SamplingParams()
        holder: list[GenerationResult] = []
        return GenerationStream(self._stream_events(prompt, params, raw, holder), holder)

    def score_likelihood(
        self, prompt: Prompt, answer: str, *, raw: bool = False
    ) -> LikelihoodResult:
        result = self._call("score", (prompt, answer, raw), None)
        assert isinstance(result, LikelihoodResult)
        return result

    def score_many(
        self, prompt: Prompt, answers: Sequence[str], *, raw: bool = False
    ) -> list[LikelihoodResult | None]:
        """Score several answers to one prompt in one request (None for an empty answer): the
        prompt is prefilled once and shared answer prefixes are scored once."""
        result = self._call("score_many", (prompt, list(answers), raw), None)
        assert isinstance(result, list)
        return result

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        result = self._call("embed", (list(texts),), None)
        assert isinstance(result, list)
        return result

    def bench(self, prompt: str = BENCH_PROMPT, runs: int = 3, gen_tokens: int = 64) -> BenchResult:
        result = self._call("bench", (prompt, runs, gen_tokens), None)
        assert isinstance(result, BenchResult)
        return result

    def memory(self) -> dict[str, int]:
        """The worker's VmPeak/VmSize/VmHWM/VmRSS in bytes (Linux; empty elsewhere)."""
        result = self._call("memory", (), None)
        assert isinstance(result, dict)
        return result

    # -- internals ------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self._process is not None and bool(self._process.is_alive())

    def _drop_process(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None

    def _spawn(self) -> None:
        from engine.inference.worker_process import worker_main

        if self.deaths and self._failures:
            delay = min(
                self.options.backoff_max_s,
                self.options.backoff_initial_s * 2 ** (self._failures - 1),
            )
            log.info("restarting the inference worker in %.1f s", delay)
            time.sleep(delay)
        parent, child = self._mp.Pipe(duplex=True)
        options = {
            "address_space_limit": self.options.address_space_limit,
            "forward_log_level": self.options.forward_log_level,
        }
        process = self._mp.Process(
            target=worker_main,
            args=(child, self._cancel_slot, options),
            name="cortensor-inference",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self._killed = False
        self._doing = "start"
        message = self._receive(self.options.start_timeout_s)
        if message[0] != "ready":
            raise WorkerCrashedError(f"the inference worker did not start: {message!r}")

    def _ensure_running(self) -> None:
        if self._alive() and self.load_report is not None:
            return
        if self._process is not None and not self._alive():
            self._record_death()
        self._load(self.model_path, self.settings, self.kind)

    def _record_death(self) -> WorkerDeath:
        process = self._process
        code = process.exitcode if process is not None else None
        signal_name = None
        if code is not None and code < 0:
            try:
                signal_name = signal.Signals(-code).name
            except ValueError:
                signal_name = f"signal {-code}"
        death = WorkerDeath(code, signal_name, self._doing, time.time())
        if not self._killed:
            self.deaths.append(death)
            self._failures += 1
            log.warning("%s", death.describe())
        self._drop_process()
        self.load_report = None
        return death

    def _load(self, path: str, settings: LoadSettings, kind: str) -> LoadReport:
        requested = settings
        adjustments: list[str] = []
        attempt = settings
        while True:
            if not self._alive():
                self._spawn()
            assert self._conn is not None
            self._doing = f"loading {Path(path).name}"
            self._conn.send(("load", path, attempt, kind, requested, tuple(adjustments)))
            try:
                message = self._receive(self.options.load_timeout_s)
            except WorkerCrashedError as exc:
                death = self.deaths[-1] if self.deaths else None
                if death is None or death.signal_name != "SIGKILL":
                    raise
                message = ("error", None, "oom", f"{exc} (killed: likely out of memory)")
            if message[0] == "loaded":
                report: LoadReport = message[1]
                self.load_report = report
                for change in report.adjustments:
                    log.warning("loaded %s with a change: %s", Path(path).name, change)
                return report
            _, _, error_kind, text = message
            if error_kind != "oom":
                if self._alive() and self.load_report is not None:
                    log.info("the previous model stays loaded")
                raise _ERRORS.get(error_kind, ModelLoadError)(text)
            step = smaller_settings(attempt, self.options.min_ctx)
            if step is None:
                raise OutOfMemoryError(
                    f"{text}; tried down to context {attempt.n_ctx} with "
                    f"{attempt.n_gpu_layers} GPU layers"
                )
            attempt, reason = step
            adjustments.append(reason)
            log.warning("retrying the load of %s: %s", Path(path).name, reason)
            # A fresh process for the retry: a failed allocation can leave the old one's address
            # space fragmented (or native state half torn down).
            self.close()

    def _receive(self, timeout: float | None) -> tuple[Any, ...]:
        """Next non-log message from the worker; raises WorkerCrashedError when it died."""
        assert self._conn is not None and self._process is not None
        conn, sentinel = self._conn, self._process.sentinel
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([conn, sentinel], remaining)
            if not ready:
                self.kill()
                self._process.join(timeout=5)
                self._record_death()
                raise DeadlineExceededError(
                    f"the inference worker did not answer within {timeout:.0f} s; it was stopped"
                )
            if conn in ready:
                try:
                    message: tuple[Any, ...] = conn.recv()
                except (EOFError, OSError):
                    message = ("eof",)
                if message[0] == "log":
                    worker_log.log(message[1], "%s", message[2])
                    continue
                if message[0] != "eof":
                    return message
            self._process.join(timeout=5)
            killed = self._killed
            death = self._record_death()
            if killed:
                return ("killed",)
            raise WorkerCrashedError(
                f"{death.describe()}; it restarts with the last good model on the next request"
            )

    def _request(self, op: str, args: tuple[Any, ...]) -> int:
        self._ensure_running()
        assert self._conn is not None
        rid = next(self._ids)
        self._current = rid
        self._doing = op
        self._conn.send((op, rid, *args))
        return rid

    def _call(self, op: str, args: tuple[Any, ...], timeout: float | None) -> Any:
        with self._lock:
            rid = self._request(op, args)
            while True:
                message = self._receive(timeout)
                if message[0] == "killed":
                    raise WorkerCrashedError(f"the inference worker was stopped during {op}")
                if message[0] == "done" and message[1] == rid:
                    self._failures = 0
                    return message[2]
                if message[0] == "error" and message[1] == rid:
                    raise _ERRORS.get(message[2], InferenceRequestError)(message[3])

    def _stream_events(
        self, prompt: Prompt, params: SamplingParams, raw: bool, holder: list[GenerationResult]
    ) -> Iterator[TokenEvent]:
        with self._lock:
            rid = self._request("generate", (prompt, params, raw))
            timeout = (
                params.deadline_s + self.options.request_grace_s if params.deadline_s else None
            )
            started = time.monotonic()
            text: list[str] = []
            ids: list[int] = []
            try:
                yield from self._relay(
                    rid, timeout=timeout, started=started, text=text, ids=ids, holder=holder
                )
            except GeneratorExit:
                # the caller stopped iterating: stop the worker too, and drain the request so
                # the next one starts clean
                if not holder and self._alive():
                    self._cancel_slot.value = rid
                    self._drain(rid)
                raise

    def _drain(self, rid: int) -> None:
        with contextlib.suppress(ModelError):
            while True:
                message = self._receive(self.options.request_grace_s + 5)
                if message[0] in ("done", "error") and message[1] == rid:
                    return
                if message[0] == "killed":
                    return

    def _relay(
        self,
        rid: int,
        *,
        timeout: float | None,
        started: float,
        text: list[str],
        ids: list[int],
        holder: list[GenerationResult],
    ) -> Iterator[TokenEvent]:
        while True:
            remaining = None if timeout is None else timeout - (time.monotonic() - started)
            message = self._receive(None if remaining is None else max(0.0, remaining))
            if message[0] == "tokens" and message[1] == rid:
                for index, token_id, piece in message[2]:
                    text.append(piece)
                    ids.append(token_id)
                    yield TokenEvent(index, token_id, piece)
            elif message[0] == "done" and message[1] == rid:
                self._failures = 0
                holder.append(message[2])
                return
            elif message[0] == "error" and message[1] == rid:
                raise _ERRORS.get(message[2], InferenceRequestError)(message[3])
            elif message[0] == "killed":
                holder.append(_killed_result(self.model_path, text, ids))
                return


def _killed_result(model: str, text: list[str], ids: list[int]) -> GenerationResult:
    figures = GenerationFigures(0, len(ids), 0.0, 0.0, 0.0, 0.0)
    return GenerationResult("".join(text), tuple(ids), "killed", figures, model)


def llama_cpp_version() -> str:
    """The llama-cpp-python build serving the models (a benchmark record names it). Imported
    here, not at the top: the parent process never loads a model itself."""
    import llama_cpp

    return str(llama_cpp.__version__)
