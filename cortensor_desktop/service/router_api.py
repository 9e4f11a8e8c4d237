"""The router's HTTP front: OpenAI-compatible endpoints over engine/node/router.py.

    POST /v1/chat/completions   chat (messages through the model's chat template), SSE with
                                `stream: true`; every answer carries a `cortensor` object
    POST /v1/completions        a plain prompt
    GET  /v1/models             the models pool miners serve, with precision and miner count
    POST /api/v1/validate       judge a prompt and an answer produced elsewhere (PoI checks)
    GET  /health                chain, deposit, budget, queue
    GET  /metrics               the router's Prometheus metrics (also on the status API in `run`)

Errors use OpenAI's shape, `{"error": {"message", "type", "code", "param"}}`, with the status the
engine's `RouterError` names. Access: when any key exists (`router keys add`), or the router
listens beyond loopback, every request needs `Authorization: Bearer <key>`.

Standard library only (`ThreadingHTTPServer`, as the status API): one thread per connection
suits a server whose requests wait seconds on the chain, admission is bounded by the engine, and
the app ships no web framework. A client that disconnects while its task is on chain changes
nothing: the handler thread finishes the request, the journal and the key's spend record it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cortensor_desktop import __version__
from cortensor_desktop.service.json_handler import JsonRequestHandler
from engine.node import task_prompt
from engine.node.router import (
    BadRequest,
    ContextTooLong,
    Router,
    RouterAnswer,
    RouterError,
    TaskRequest,
    UnknownModel,
)
from engine.state.router_store import ApiKey, ApiKeys

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8787
MAX_BODY = 1024 * 1024
MAX_REDUNDANCY = 16
# A model id with this suffix asks for an unvalidated session (a client that can send only a
# model name, as Open WebUI's model picker, can still sample); so does "cortensor":
# {"validated": false}.
UNVALIDATED_SUFFIX = ":unvalidated"
LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0)


class ApiError(RouterError):
    """An HTTP-level refusal (auth, limits, malformed body) in the same shape as the engine's."""

    def __init__(
        self, status: int, code: str, kind: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message, retry_after)
        self.status, self.code, self.kind = status, code, kind


# --- metrics -------------------------------------------------------------------------------------


class RouterMetrics:
    """Requests, latency, failures by cause and spend; a collector for any Prometheus registry."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "cortensor_router_requests", "Router requests by endpoint and status",
            ["endpoint", "status"], registry=None,
        )  # fmt: skip
        self.failures = Counter(
            "cortensor_router_failures", "Router requests not answered, by cause", ["cause"],
            registry=None,
        )  # fmt: skip
        self.latency = Histogram(
            "cortensor_router_latency_seconds", "Submit to validated answer, answered requests",
            buckets=LATENCY_BUCKETS, registry=None,
        )  # fmt: skip
        self.spend = Counter(
            "cortensor_router_spent_wei", "Paid to miners for answered requests (wei)",
            registry=None,
        )  # fmt: skip
        self.in_flight: Callable[[], int] = lambda: 0

    def on_router(self, what: str, figures: dict[str, Any]) -> None:
        if what == "answered":
            self.latency.observe(float(figures["latency_s"]))
            self.spend.inc(int(figures["spent_wei"]))
        elif what == "failed":
            self.failures.labels(cause=str(figures["code"])).inc()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for metric in (self.requests, self.failures, self.latency, self.spend):
            yield from metric.collect()
        gauge = GaugeMetricFamily(
            "cortensor_router_in_flight", "Router requests admitted and not yet answered"
        )
        gauge.add_metric([], self.in_flight())
        yield gauge


# --- access --------------------------------------------------------------------------------------


class Access:
    """API keys from the database, and each key's requests in the last minute (in memory)."""

    def __init__(self, keys: ApiKeys, required: bool, price_wei: int) -> None:
        self.keys = keys
        self.always_required = required
        self.price_wei = price_wei
        self._recent: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, header: str) -> ApiKey | None:
        """The caller's key; None when this router is open (no keys, loopback only)."""
        scheme, _, presented = header.partition(" ")
        required = self.always_required or self.keys.any_active()
        if not required:
            return None  # an open loopback router: clients send some key anyway (openai does)
        if not presented.strip() or scheme.lower() != "bearer":
            if required:
                raise ApiError(
                    401, "invalid_api_key", "invalid_request_error",
                    "this router needs an API key: send 'Authorization: Bearer <key>' "
                    "(`cortensor-desktop router keys add NAME` makes one)",
                )  # fmt: skip
            return None
        key = self.keys.lookup(presented)
        if key is None:
            raise ApiError(401, "invalid_api_key", "invalid_request_error", "unknown API key")
        if key.revoked:
            raise ApiError(403, "key_revoked", "permission_error", f"API key {key.id} was revoked")
        self._rate(key)
        with self._lock:
            pending = self._pending.get(key.id, 0)
        if key.spent_wei + (pending + 1) * self.price_wei > key.spend_cap_wei:
            raise ApiError(
                429, "insufficient_quota", "insufficient_quota",
                f"API key {key.id} reached its spending cap ({key.spent_wei} of "
                f"{key.spend_cap_wei} wei spent, {pending} requests in flight)",
            )  # fmt: skip
        return key

    def _rate(self, key: ApiKey) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(key.id, deque())
            while recent and now - recent[0] >= 60:
                recent.popleft()
            if len(recent) >= key.requests_per_minute:
                wait = int(60 - (now - recent[0])) + 1
                raise ApiError(
                    429, "rate_limit_exceeded", "rate_limit_error",
                    f"API key {key.id} is limited to {key.requests_per_minute} requests per "
                    f"minute; retry in {wait} s",
                    retry_after=wait,
                )  # fmt: skip
            recent.append(now)

    @contextlib.contextmanager
    def pending(self, key: ApiKey | None) -> Iterator[None]:
        """Count a key's request as in flight (its price is reserved against the cap)."""
        if key is None:
            yield
            return
        with self._lock:
            self._pending[key.id] = self._pending.get(key.id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._pending[key.id] -= 1


# --- the request bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    request: TaskRequest
    max_tokens: int
    prompt_tokens: int
    stream: bool
    include_usage: bool


class Tokens:
    """Token counting per model (the model's own tokenizer), loaded on first use."""

    def __init__(self, resolve: Callable[[str], Any]) -> None:
        self._resolve = resolve  # model id -> engine.inference.tokenizer.Tokenizer
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def of(self, model: str) -> Any:
        with self._lock:
            if model not in self._cache:
                self._cache[model] = self._resolve(model)
            return self._cache[model]


class Front:
    """What the handler needs: the router, access, tokenizers, the validator and metrics."""

    def __init__(
        self,
        router: Router,
        access: Access,
        tokens: Tokens,
        default_model: str,
        validator: Callable[[], Any] | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.router = router
        self.access = access
        self.tokens = tokens
        self.default_model = default_model
        self.validator = validator
        self._validator: Any = None
        self._validator_lock = threading.Lock()
        self.metrics = metrics or RouterMetrics()
        self.metrics.in_flight = lambda: router.active
        router.on(self.metrics.on_router)

    def judge(self) -> Any:
        with self._validator_lock:
            if self._validator is None:
                if self.validator is None:
                    raise ApiError(
                        503, "validator_unavailable", "service_unavailable",
                        "this router has no validator models loaded",
                    )  # fmt: skip
                self._validator = self.validator()
            return self._validator

    def close(self) -> None:
        """Close a validator this router built for itself; one it borrows (an embedded
        network's oracle's) has no `close` here and stays with its owner."""
        with self._validator_lock:
            close = getattr(self.validator, "close", None)
            if callable(close):
                close()
            self._validator = None

    def parse(self, body: dict[str, Any], key: ApiKey | None, chat: bool) -> Parsed:
        settings = self.router.settings
        named = body.get("model") or self.default_model
        model = named.removesuffix(UNVALIDATED_SUFFIX) if isinstance(named, str) else None
        if model is None or not self.router.known_model(model):
            raise UnknownModel(
                f"unknown model {named!r}; GET /v1/models lists what the network serves"
            )
        limit = settings.max_tokens_limit
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = limit
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest("max_tokens must be a positive integer")
        if max_tokens > limit:
            raise BadRequest(
                f"max_tokens {max_tokens} is over this network's limit of {limit} tokens per "
                "answer (the miners' and oracle's answer_max_tokens)"
            )
        _check_choices(body)
        extension = body.get("cortensor") or {}
        if not isinstance(extension, dict):
            raise BadRequest('cortensor must be an object: {"redundancy": K, "precision": P}')
        validated = _validated(extension, named != model)
        sampling = _sampling(body, validated)
        default_k = settings.redundancy if validated else settings.unvalidated_redundancy
        redundancy = extension.get("redundancy", default_k)
        if not isinstance(redundancy, int) or not 1 <= redundancy <= MAX_REDUNDANCY:
            raise BadRequest(f"cortensor.redundancy must be an integer from 1 to {MAX_REDUNDANCY}")
        precision = extension.get("precision", settings.precision)
        if precision not in ("quantized", "full"):
            raise BadRequest("cortensor.precision must be 'quantized' or 'full'")
        model_input, encoded = _prompt(body, chat, max_tokens, sampling)
        prompt_tokens = int(self.tokens.of(model).prompt_tokens(model_input))
        if prompt_tokens + max_tokens > settings.context_tokens:
            raise ContextTooLong(
                f"the prompt is {prompt_tokens} tokens; with max_tokens {max_tokens} it does "
                f"not fit the model's context of {settings.context_tokens} tokens"
            )
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("stream must be true or false")
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        request = TaskRequest(
            model=model,
            prompt=encoded,
            redundancy=redundancy,
            precision=precision,
            key_id=key.id if key else None,
            validated=validated,
            sampling=sampling,
        )
        return Parsed(request, max_tokens, prompt_tokens, stream, include_usage)


def _validated(extension: dict[str, Any], suffixed: bool) -> bool:
    """Whether the request wants a validated session (the default) or an unvalidated one."""
    flag = extension.get("validated")
    if flag is not None and not isinstance(flag, bool):
        raise BadRequest("cortensor.validated must be true or false")
    if suffixed and flag is True:
        raise BadRequest(
            f"a model ending in {UNVALIDATED_SUFFIX} asks for an unvalidated session; "
            "cortensor.validated true contradicts it"
        )
    return not (suffixed or flag is False)


def _sampling(body: dict[str, Any], validated: bool) -> task_prompt.Sampling | None:
    """How the miners sample: greedy (None) on a validated session, which refuses any other
    temperature; on an unvalidated one OpenAI's defaults (temperature 1, top_p 1) and a drawn
    seed unless the request gives one (the answer says which, so it can be repeated)."""
    temperature = body.get("temperature")
    if validated:
        if temperature is not None and temperature != 0:
            raise BadRequest(
                f"temperature {temperature} is refused on a validated session: validated "
                "tasks are greedy (the oracle checks every answer against its own greedy "
                "answer); send temperature 0 or none, or ask for an unvalidated session "
                f'(model "NAME{UNVALIDATED_SUFFIX}" or "cortensor": {{"validated": false}}) '
                "to sample"
            )
        return None
    temperature = 1.0 if temperature is None else temperature
    top_p = 1.0 if body.get("top_p") is None else body["top_p"]
    seed = body.get("seed")
    seed = secrets.randbelow(task_prompt.MAX_SEED + 1) if seed is None else seed
    try:
        task_prompt.check_sampling(temperature, top_p, seed)
    except task_prompt.PromptFormatError as exc:
        raise BadRequest(str(exc)) from None
    if temperature == 0:
        return None  # greedy, unvalidated
    return task_prompt.Sampling(float(temperature), float(top_p), int(seed))


def _check_choices(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("n must be 1: the network returns one consensus answer")
    if body.get("tools") or body.get("functions"):
        raise BadRequest("tools and function calling are not served by this network")


def _prompt(
    body: dict[str, Any], chat: bool, max_tokens: int, sampling: task_prompt.Sampling | None = None
) -> tuple[Any, str]:
    """What the model reads (for counting) and the task's prompt string on chain."""
    try:
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list):
                raise BadRequest("messages must be a list of {role, content} objects")
            checked = task_prompt.check_messages(messages)
            return list(checked), task_prompt.encode_chat(checked, max_tokens, sampling)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("prompt must be one non-empty string")
        return prompt, task_prompt.encode_text(prompt, max_tokens, sampling)
    except task_prompt.PromptFormatError as exc:
        raise BadRequest(str(exc)) from None


# --- the answers ---------------------------------------------------------------------------------


def _usage(front: Front, parsed: Parsed, text: str) -> dict[str, int]:
    completion = int(front.tokens.of(parsed.request.model).text_tokens(text))
    return {
        "prompt_tokens": parsed.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": parsed.prompt_tokens + completion,
    }


def _finish_reason(usage: dict[str, int], parsed: Parsed) -> str:
    return "length" if usage["completion_tokens"] >= parsed.max_tokens else "stop"


def chat_document(front: Front, parsed: Parsed, answer: RouterAnswer) -> dict[str, Any]:
    text = answer.outcome.answer or ""
    usage = _usage(front, parsed, text)
    return {
        "id": "chatcmpl-" + answer.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": _finish_reason(usage, parsed),
            }
        ],
        "usage": usage,
        "system_fingerprint": f"cortensor-desktop-{__version__}",
        "cortensor": answer.extension(),
    }


def completion_document(front: Front, parsed: Parsed, answer: RouterAnswer) -> dict[str, Any]:
    text = answer.outcome.answer or ""
    usage = _usage(front, parsed, text)
    return {
        "id": "cmpl-" + answer.request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": _finish_reason(usage, parsed),
            }
        ],
        "usage": usage,
        "cortensor": answer.extension(),
    }


def chat_chunks(front: Front, parsed: Parsed, answer: RouterAnswer) -> Iterator[dict[str, Any]]:
    """The validated answer as OpenAI's `chat.completion.chunk`s: role, token pieces, finish."""
    text = answer.outcome.answer or ""
    usage = _usage(front, parsed, text)
    base = {
        "id": "chatcmpl-" + answer.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": answer.model,
        "system_fingerprint": f"cortensor-desktop-{__version__}",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in front.tokens.of(answer.model).pieces(text):
        yield chunk({"content": piece})
    yield {**chunk({}, _finish_reason(usage, parsed)), "cortensor": answer.extension()}
    if parsed.include_usage:
        yield {**base, "choices": [], "usage": usage, "cortensor": answer.extension()}


# --- the server ----------------------------------------------------------------------------------


class _Handler(JsonRequestHandler):
    server: _Server
    server_version = f"cortensor-router/{__version__}"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("router %s - %s", self.address_string(), format % args)  # never headers

    # -- plumbing -------------------------------------------------------------------------

    def _error(self, exc: RouterError, endpoint: str) -> None:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if not getattr(self, "_body_read", True):
            # A refusal before the body was read: its bytes must not be taken for the next
            # request on this keep-alive connection.
            self.close_connection = True
            headers["Connection"] = "close"
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="cortensor-router"'
        self._count(endpoint, exc.status)
        if exc.status >= 500 or exc.status == 429:
            log.info("router %s %d %s: %s", endpoint, exc.status, exc.code, exc.message)
        self._json(
            exc.status,
            {"error": {"message": exc.message, "type": exc.kind, "code": exc.code, "param": None}},
            headers,
        )

    def _count(self, endpoint: str, status: int) -> None:
        self.server.front.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(
                411, "length_required", "invalid_request_error", "send a Content-Length"
            ) from None
        if length > MAX_BODY:
            raise ApiError(
                413, "body_too_large", "invalid_request_error",
                f"the request body is {length} bytes; the limit is {MAX_BODY}",
            )  # fmt: skip
        raw = self.rfile.read(length) if length > 0 else b""
        self._body_read = True
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                400, "invalid_json", "invalid_request_error", f"the body is not JSON: {exc}"
            ) from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "invalid_request_error", "send a JSON object")
        return body

    # -- routes ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        front = self.server.front
        try:
            if path == "/health":
                self._count(path, 200)
                self._json(200, front.router.health())
            elif path == "/metrics":
                self._metrics()
            elif path in ("/v1/models", "/api/v1/models"):
                front.access.check(self.headers.get("Authorization", ""))
                self._count("/v1/models", 200)
                self._json(200, self._models())
            else:
                raise ApiError(404, "not_found", "invalid_request_error", _ROUTES)
        except RouterError as exc:
            self._error(exc, path)
        except Exception as exc:  # a chain read failing: still one JSON error, never a trace
            log.exception("router GET %s failed", path)
            self._error(ApiError(500, "internal_error", "server_error", str(exc)), path)

    def _models(self) -> dict[str, Any]:
        """Each pooled model twice: validated (its id) and unvalidated (the id with the
        suffix), so a client that only picks a model can choose either."""
        router = self.server.front.router
        return {
            "object": "list",
            "data": [
                {
                    "id": m.id + ("" if validated else UNVALIDATED_SUFFIX),
                    "object": "model",
                    "created": 0,
                    "owned_by": "cortensor",
                    "cortensor": {
                        "validated": validated,
                        "precisions": list(m.precisions),
                        "miners": m.miners,
                        "full_precision_miners": m.full_precision_miners,
                        "max_tokens": router.settings.max_tokens_limit,
                        "context_tokens": router.settings.context_tokens,
                    },
                }
                for m in router.pooled_models()
                for validated in (True, False)
            ],
        }

    def _metrics(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.server.front.metrics)
        body = generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        front = self.server.front
        self._body_read = False
        try:
            if path not in _POSTS:
                raise ApiError(404, "not_found", "invalid_request_error", _ROUTES)
            key = front.access.check(self.headers.get("Authorization", ""))
            body = self._body()
            if path == "/api/v1/validate":
                self._validate(body)
                return
            chat = path.endswith("chat/completions")
            parsed = front.parse(body, key, chat)
            with front.access.pending(key):
                answer = front.router.complete(parsed.request)
            self._answer(path, parsed, answer, chat)
        except RouterError as exc:
            self._error(exc, path)
        except Exception as exc:
            log.exception("router POST %s failed", path)
            self._error(ApiError(500, "internal_error", "server_error", str(exc)), path)

    def _answer(self, path: str, parsed: Parsed, answer: RouterAnswer, chat: bool) -> None:
        front = self.server.front
        self._count(path, 200)
        if not parsed.stream:
            document = (chat_document if chat else completion_document)(front, parsed, answer)
            self._json(200, document)
            return
        chunks = (
            chat_chunks(front, parsed, answer)
            if chat
            else _completion_chunks(front, parsed, answer)
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk, default=str)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log.info("router: client left before the stream ended (request %s)", answer.request_id)

    def _validate(self, body: dict[str, Any]) -> None:
        front = self.server.front
        answer = body.get("answer")
        if not isinstance(answer, str):
            raise BadRequest("answer must be the text to judge")
        model = body.get("model") or front.default_model
        if not isinstance(model, str) or model != front.default_model:
            raise UnknownModel(
                f"this router validates answers of {front.default_model} only (the model its "
                "validator holds)"
            )
        chat = "messages" in body
        limit = front.router.settings.max_tokens_limit
        max_tokens = body.get("max_tokens", limit)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest("max_tokens must be a positive integer")
        model_input, _ = _prompt(body, chat, max_tokens)
        started = time.monotonic()
        judgement = front.judge().judge(model_input, [("external", answer)], max_tokens)
        judged = judgement.answers[0]
        verdict = judged.verdict
        self._count("/api/v1/validate", 200)
        self._json(
            200,
            {
                "object": "validation",
                "model": model,
                "passed": verdict.passed,
                "score": judged.score,
                "failed_checks": [c.value for c in verdict.failed_checks],
                "top1_agreement": verdict.top1_agreement,
                "cosine": verdict.cosine,
                "ended_properly": verdict.ended_properly,
                "tokens": verdict.tokens,
                "thresholds": {
                    "top1_min": verdict.thresholds.top1_min,
                    "cosine_min": verdict.thresholds.cosine_min,
                    "require_proper_ending": verdict.thresholds.require_proper_ending,
                },
                "max_tokens": max_tokens,
                "reference_answer": judgement.reference,
                "checking_s": round(time.monotonic() - started, 3),
            },
        )

    def do_PUT(self) -> None:
        self._error(ApiError(405, "method_not_allowed", "invalid_request_error", _ROUTES), "")

    do_DELETE = do_PUT


def _completion_chunks(
    front: Front, parsed: Parsed, answer: RouterAnswer
) -> Iterator[dict[str, Any]]:
    document = completion_document(front, parsed, answer)
    base = {k: document[k] for k in ("id", "object", "created", "model")}
    for piece in front.tokens.of(answer.model).pieces(answer.outcome.answer or ""):
        yield {**base, "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
    finish = document["choices"][0]["finish_reason"]
    yield {
        **base,
        "choices": [{"index": 0, "text": "", "finish_reason": finish}],
        "cortensor": document["cortensor"],
    }


_POSTS = ("/v1/chat/completions", "/v1/completions", "/api/v1/completions", "/api/v1/validate")
_ROUTES = (
    "unknown path; the router serves POST /v1/chat/completions, POST /v1/completions, "
    "GET /v1/models, POST /api/v1/validate, GET /health, GET /metrics"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    front: Front


class RouterServer:
    """Owns the listening socket and its thread."""

    def __init__(self, front: Front, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.front = front
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> None:
        try:
            self._server = _Server((self.host, self.requested_port), _Handler)
        except OSError as exc:
            raise OSError(
                f"the router cannot listen on {self.host}:{self.requested_port}: {exc}"
            ) from None
        self._server.front = self.front
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="router-api"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("router (OpenAI-compatible) on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.front.close()


def check_bind(host: str, allow_remote: bool, keys: ApiKeys) -> bool:
    """Whether keys are required; refuses an address beyond loopback without flag and keys."""
    if host in LOOPBACK:
        return False
    if not allow_remote:
        raise ValueError(
            f"the router binds {host} only with --allow-remote (it spends this wallet's deposit "
            "for whoever can reach it)"
        )
    if not keys.any_active():
        raise ValueError(
            f"the router refuses to listen on {host} without API keys: "
            "`cortensor-desktop router keys add NAME` first"
        )
    return True
