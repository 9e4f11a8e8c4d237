"""`attach --home` reads another home's api.json: it may point the token anywhere. It must not.

A real status API on 127.0.0.1; the api.json beside it is rewritten as a hostile one would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortensor_desktop.service.attach import NodeApi, NodeUnreachableError
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.state.commands import CommandQueue
from engine.state.events import EventBus
from engine.state.summary import Summary


@pytest.fixture
def api(tmp_path: Path) -> Iterator[StatusApi]:
    server = StatusApi(
        SummaryHolder(Summary(started_at=1.0), {"network": "embedded"}),
        EventBus(),
        CommandQueue(),
        tmp_path / "data",
        port=-1,
    )
    server.start()
    yield server
    server.stop()


def _rewrite(api: StatusApi, **changes: str) -> None:
    info = json.loads(api.api_file.read_text())
    info.update(changes)
    api.api_file.write_text(json.dumps(info))


def test_a_url_off_loopback_is_refused(api: StatusApi) -> None:
    _rewrite(api, url="http://203.0.113.9:80")
    with pytest.raises(NodeUnreachableError, match=r"127\.0\.0\.1 only"):
        NodeApi.from_api_file(api.api_file)


def test_the_token_is_the_file_beside_api_json_whatever_it_names(
    api: StatusApi, tmp_path: Path
) -> None:
    secret = tmp_path / "someone-elses.passphrase"
    secret.write_text("not the token\n")
    _rewrite(api, token_file=str(secret))
    node = NodeApi.from_api_file(api.api_file)
    assert node.token == api.token


def test_the_token_never_goes_through_a_proxy(
    api: StatusApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy on the discard port: urllib's default opener would send the request (and the
    # bearer token) there for 127.0.0.1, since no_proxy does not list it.
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    node = NodeApi.from_api_file(api.api_file)
    assert node.summary()["network"] == "embedded"
