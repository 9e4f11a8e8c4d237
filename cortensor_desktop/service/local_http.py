"""HTTP to this machine's own servers (the status API, the router) that never uses a proxy.

urllib honours `http_proxy` for 127.0.0.1 unless `no_proxy` names it, so with a proxy set in the
environment `status`, `attach` and `wallet withdraw` would ask the proxy for the local node. Remote
URLs keep the environment's proxy settings.
"""

from __future__ import annotations

import urllib.request
from http.client import HTTPResponse
from typing import cast

from chain.rpc import is_loopback

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urlopen(request: str | urllib.request.Request, timeout: float) -> HTTPResponse:
    """`urllib.request.urlopen`, direct for loopback URLs, through the environment otherwise."""
    url = request if isinstance(request, str) else request.full_url
    if is_loopback(url):
        return cast(HTTPResponse, _DIRECT.open(request, timeout=timeout))
    return cast(HTTPResponse, urllib.request.urlopen(request, timeout=timeout))
