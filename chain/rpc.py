"""Backends: the same client talks to the in-process chain or to HTTP RPCs with failover.

`FailoverProvider` holds the profile's RPC URLs in order. A request that fails with a transient
error (connection refused, timeout, HTTP 429/5xx) moves on to the next URL; when every URL failed
it waits with exponential backoff and tries the round again, then gives up with RpcUnavailable.
`generation` counts switches, so the transaction sender re-checks the chain id after a failover.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
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


@dataclass(frozen=True)
class RetryPolicy:
    rounds: int = 3
    backoff_s: float = 0.2
    request_timeout_s: float = 10.0


class FailoverProvider(BaseProvider):
    def __init__(self, urls: Sequence[str], policy: RetryPolicy | None = None) -> None:
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
        self.generation = 0

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
                time.sleep(self.policy.backoff_s * 2 ** (round_number - 1))
            start = self._current
            for offset in range(len(self._providers)):
                index = (start + offset) % len(self._providers)
                try:
                    response = self._providers[index].make_request(method, params)
                except Exception as exc:
                    if not _is_transient(exc):
                        raise
                    failures.append(f"{public_url(self.urls[index])}: {type(exc).__name__}")
                    continue
                self._switch_to(index)
                return response
        tried = "; ".join(failures[-len(self.urls) :])
        raise RpcUnavailable(
            f"no RPC URL answered {method} after {self.policy.rounds} rounds ({tried})"
        )

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
