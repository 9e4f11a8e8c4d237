"""Backends: the same client talks to the in-process chain or to HTTP RPCs with failover.

`FailoverProvider` holds the profile's RPC URLs in order. A request that fails with a transient
error (connection refused, timeout, HTTP 429/5xx) moves on to the next URL; when every URL failed
it waits with exponential backoff and jitter and tries the round again, then gives up with
RpcUnavailable. A URL that answers HTTP 429 (rate limited) rests: it is not asked again for its
Retry-After, or a jittered backoff that doubles while it keeps refusing, unless every URL rests.
`generation` counts switches, so the transaction sender re-checks the chain id after a failover.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from chain.errors import RpcUnavailable

log = logging.getLogger(__name__)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def public_url(url: str) -> str:
    """scheme://host:port only: a hosted RPC's path or query often carries its API key."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    hidden = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


_ANY_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>,]+", re.IGNORECASE)


def scrub_urls(text: str) -> str:
    """Every URL in a message cut to scheme://host:port: error texts from requests and web3
    quote the full URL, and a hosted RPC's API key lives in its path."""
    return _ANY_URL.sub(lambda m: public_url(m.group(0)), text)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# requests merges a None-valued proxy over the environment's: no proxy for that scheme.
NO_PROXIES: dict[str, str | None] = {"http": None, "https": None}


def is_loopback(url: str) -> bool:
    """True for a URL on this machine, which must never go through an HTTP proxy.

    `http_proxy` without a matching `no_proxy` would otherwise send a devnet's or a local node's
    traffic to the proxy, which cannot reach this machine's loopback.
    """
    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status in _RETRY_STATUS
    return isinstance(exc, requests.RequestException | OSError | TimeoutError)


EstimateBlock = Literal["latest", "pending"]  # the blocks a gas estimate may name


@dataclass(frozen=True)
class RetryPolicy:
    rounds: int = 3
    backoff_s: float = 0.2
    request_timeout_s: float = 10.0
    # Every wait is drawn from [1 - jitter, 1 + jitter] x its nominal length, so the nodes that
    # one busy RPC turned away do not all come back in the same instant.
    jitter: float = 0.5
    rate_limit_s: float = 1.0  # an RPC that answered 429 rests this long, doubling in a row
    max_rest_s: float = 30.0  # the longest rest (a Retry-After header is honoured up to it)


def _rate_limited(exc: BaseException) -> bool:
    return (
        isinstance(exc, requests.HTTPError)
        and exc.response is not None
        and exc.response.status_code == 429
    )


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


class FailoverProvider(BaseProvider):
    def __init__(
        self,
        urls: Sequence[str],
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if not urls:
            raise RpcUnavailable("the network profile lists no RPC URL")
        self.policy = policy or RetryPolicy()
        self.urls = tuple(urls)
        # web3's own retries are off: this class decides when to retry and where.
        self._providers = [
            HTTPProvider(
                u, request_kwargs=self._request_kwargs(u), exception_retry_configuration=None
            )
            for u in self.urls
        ]
        self._current = 0
        self._lock = threading.Lock()
        self._sleep, self._rng, self._clock = sleep, rng or random.Random(), clock
        self._rest_until = [0.0] * len(self.urls)  # a rate-limited URL is not asked before
        self._strikes = [0] * len(self.urls)  # 429s in a row per URL
        self.generation = 0
        self.retried_requests = 0  # requests that met a transient error and were sent again

    def _request_kwargs(self, url: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": self.policy.request_timeout_s}
        if is_loopback(url):
            kwargs["proxies"] = NO_PROXIES
        return kwargs

    @property
    def current_url(self) -> str:
        return self.urls[self._current]

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        failures: list[str] = []
        for round_number in range(self.policy.rounds):
            if round_number:
                self._sleep(self._jittered(self.policy.backoff_s * 2 ** (round_number - 1)))
            for index in self._order():
                try:
                    response = self._providers[index].make_request(method, params)
                except Exception as exc:
                    if not _is_transient(exc):
                        raise
                    self._note_failure(index, exc, first=not failures)
                    failures.append(f"{public_url(self.urls[index])}: {_reason(exc)}")
                    continue
                self._strikes[index] = 0
                self._switch_to(index)
                return response
        tried = "; ".join(failures[-len(self.urls) :])
        raise RpcUnavailable(
            f"no RPC URL answered {method} after {self.policy.rounds} rounds ({tried})"
        )

    def _order(self) -> list[int]:
        """The current URL first, then the others; URLs resting after a 429 are skipped, and
        when every one rests, wait for the first to wake."""
        count = len(self.urls)
        ordered = [(self._current + offset) % count for offset in range(count)]
        now = self._clock()
        awake = [i for i in ordered if self._rest_until[i] <= now]
        if awake:
            return awake
        first = min(ordered, key=lambda i: self._rest_until[i])
        self._sleep(min(self._rest_until[first] - now, self.policy.max_rest_s))
        return [first] + [i for i in ordered if i != first]

    def _note_failure(self, index: int, exc: BaseException, first: bool) -> None:
        if first:
            with self._lock:
                self.retried_requests += 1
        if not _rate_limited(exc):
            return
        self._strikes[index] += 1
        asked = _retry_after(exc)
        nominal = self.policy.rate_limit_s * 2 ** (self._strikes[index] - 1)
        rest = min(asked if asked is not None else self._jittered(nominal), self.policy.max_rest_s)
        self._rest_until[index] = self._clock() + rest
        log.info("%s rate-limits us (429): resting it %.1f s", public_url(self.urls[index]), rest)

    def _jittered(self, seconds: float) -> float:
        spread = self.policy.jitter
        return seconds * self._rng.uniform(1 - spread, 1 + spread)

    def _switch_to(self, index: int) -> None:
        if index == self._current:
            return
        with self._lock:
            if index != self._current:
                log.warning(
                    "RPC failover: %s -> %s",
                    public_url(self.urls[self._current]),
                    public_url(self.urls[index]),
                )
                self._current = index
                self.generation += 1

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.make_request(RPCEndpoint("eth_chainId"), [])
        except RpcUnavailable:
            return False
        return True


class Backend(Protocol):
    """What the client needs of a chain, whichever kind it is."""

    web3: Web3

    @property
    def generation(self) -> int:
        """Bumped whenever the backend may have moved to another node (re-check the chain id)."""
        ...

    @property
    def description(self) -> str: ...

    @property
    def estimate_block(self) -> EstimateBlock:
        """The block a gas estimate runs on: the pending one where the node has it."""
        ...


@dataclass
class HttpBackend:
    urls: Sequence[str]
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        self.provider = FailoverProvider(self.urls, self.policy)
        self.web3 = Web3(self.provider)

    @property
    def generation(self) -> int:
        return self.provider.generation

    @property
    def description(self) -> str:
        return public_url(self.provider.current_url)

    @property
    def estimate_block(self) -> EstimateBlock:
        # A node estimates "latest" with the latest block's timestamp: on a quiet chain (anvil
        # mines only on a transaction, an L2 only when busy) a deadline-gated call (reassign,
        # timeout, refund) is refused long after its deadline, though a block mined now would
        # take it. "pending" runs it at the time of the next block.
        return "pending"


@dataclass
class EmbeddedBackend:
    """An in-process py-evm chain; gone when the process ends."""

    provider: EthereumTesterProvider

    def __post_init__(self) -> None:
        self.web3 = Web3(self.provider)

    @property
    def generation(self) -> int:
        return 0

    @property
    def description(self) -> str:
        return "embedded in-process chain"

    @property
    def estimate_block(self) -> EstimateBlock:
        return "latest"  # py-evm estimates on a child of the head, stamped now; no "pending"
