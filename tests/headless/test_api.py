"""The status API in-process on 127.0.0.1: summary, SSE with Last-Event-ID, metrics, commands."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortensor_desktop.logs import redact
from cortensor_desktop.service import status_api
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder, load_or_create_token
from engine.protocol import NodeRole, TaskKind
from engine.state.commands import CommandQueue, Pause
from engine.state.events import (
    EventBus,
    InferenceFinished,
    NodeState,
    NodeStateChanged,
    PingSent,
    ValidationResult,
)
from engine.state.summary import Summary


@pytest.fixture
def api(tmp_path: Path) -> Iterator[StatusApi]:
    bus = EventBus()
    holder = SummaryHolder(Summary(started_at=1.0), {"network": "embedded"})
    sub = bus.subscribe(name="summary")
    server = StatusApi(holder, bus, CommandQueue(maxsize=2), tmp_path / "data", port=-1)
    server.start()
    bus.publish(NodeStateChanged(node="0xm", role=NodeRole.MINER, state=NodeState.REGISTERED))
    bus.publish(PingSent(node="0xm", role=NodeRole.MINER, tx_hash="0x1"))
    bus.publish(
        InferenceFinished(
            node="0xm",
            role=NodeRole.MINER,
            task_kind=TaskKind.NETWORK,
            session_id=1,
            prompt_tokens=5,
            generated_tokens=40,
            ttft_s=0.1,
            tokens_per_s=20.0,
        )
    )
    bus.publish(
        ValidationResult(
            node="0xo",
            role=NodeRole.ORACLE,
            task_kind=TaskKind.NETWORK,
            session_id=1,
            miner="0xm",
            top1_agreement=0.9,
            cosine=None,
            ended_properly=True,
            checksum_match=None,
            passed=True,
            top1_min=0.8,
            cosine_min=None,
            require_proper_ending=True,
            require_checksum=False,
        )
    )
    for event in sub.drain():
        holder.apply(event)
    yield server
    server.stop()
    sub.close()


def _request(
    api: StatusApi,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_api_json_points_at_the_server_and_goes_away_on_stop(api: StatusApi) -> None:
    info = json.loads(api.api_file.read_text())
    assert info["host"] == "127.0.0.1" and info["port"] == api.port and info["pid"] == os.getpid()
    status, _, body = _request(api, "GET", "/1/summary")
    doc = json.loads(body)
    assert status == 200
    assert doc["state"] == "running" and doc["network"] == "embedded" and doc["version"]
    assert doc["nodes"][0]["pings_sent"] == 1
    assert doc["tokens_per_s"]["15m"] == 20.0
    api.stop()
    assert not api.api_file.exists()


def test_token_file_is_private_stable_and_redacted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = load_or_create_token(data)
    path = data / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(data) == token  # kept across restarts
    assert token not in redact(f"the token is {token} ok")
    os.chmod(path, 0o644)  # others could read it: it may have leaked
    fresh = load_or_create_token(data)
    assert fresh != token  # so it is replaced, not only tightened
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(data, 0o755)
    load_or_create_token(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700  # an existing data folder is tightened


def test_commands_need_the_bearer_token(api: StatusApi) -> None:
    body = json.dumps({"type": "pause", "reason": "maintenance"})
    status, headers, _ = _request(api, "POST", "/1/commands", body)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    wrong = {"Authorization": "Bearer " + "x" * len(api.token)}
    assert _request(api, "POST", "/1/commands", body, wrong)[0] == 401
    assert _request(api, "POST", "/1/commands", body, {"Authorization": api.token})[0] == 401
    good = {"Authorization": f"Bearer {api.token}"}
    status, _, reply = _request(api, "POST", "/1/commands", body, good)
    assert status == 202
    queued = api.commands.get(timeout=0)
    assert isinstance(queued, Pause) and queued.reason == "maintenance"
    assert queued.source == "api" and json.loads(reply)["id"] == queued.id
    for bad in (
        "{",
        '{"type": "explode"}',
        '{"type": "withdraw"}',
        '{"type": "pause", "reason": 3}',
    ):
        status, _, reply = _request(api, "POST", "/1/commands", bad, good)
        assert status == 400, bad
        assert json.loads(reply)["error"]
    # a flood is refused, not queued without bound
    assert _request(api, "POST", "/1/commands", body, good)[0] == 202
    assert _request(api, "POST", "/1/commands", body, good)[0] == 202
    assert _request(api, "POST", "/1/commands", body, good)[0] == 503


def test_a_command_without_a_body_is_a_clear_400(api: StatusApi) -> None:
    good = {"Authorization": f"Bearer {api.token}"}
    status, _, reply = _request(api, "POST", "/1/commands", "", {**good, "Content-Length": "0"})
    assert status == 400 and "needs a JSON body" in json.loads(reply)["error"]
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:  # no header
        sock.sendall(
            f"POST /1/commands HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
            f"Authorization: Bearer {api.token}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.0 400"), head
    assert "needs a JSON body" in json.loads(body)["error"]
    assert len(api.commands) == 0


def _sse(api: StatusApi, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/1/events", headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    while len(events) < count:
        line = response.fp.readline().decode().rstrip("\n")
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
            continue
        key, _, value = line.partition(": ")
        current[key] = value
    conn.close()
    return events


def test_events_stream_as_sse_and_resume_after_last_event_id(api: StatusApi) -> None:
    events = _sse(api, {"Last-Event-ID": "0"}, 4)
    assert [e["id"] for e in events] == ["1", "2", "3", "4"]
    assert events[1]["event"] == "ping"
    assert json.loads(events[1]["data"])["tx_hash"] == "0x1"
    resumed = _sse(api, {"Last-Event-ID": "2"}, 2)
    assert [e["id"] for e in resumed] == ["3", "4"]
    assert _request(api, "GET", "/1/events?after=nope")[0] == 400


def test_metrics_use_an_own_registry_and_prometheus_names(api: StatusApi) -> None:
    status, headers, body = _request(api, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for name in (
        'cortensor_tokens_per_second{node="0xm",window="15m"} 20.0',
        'cortensor_node_state{node="0xm",state="registered"} 1.0',
        "cortensor_worker_restarts_total 0.0",
        'cortensor_pings_since_task{node="0xm"} 1.0',
        'cortensor_validation_top1_agreement_bucket{le="0.9",node="0xo"} 1.0',
        'cortensor_validation_top1_agreement_count{node="0xo"} 1.0',
        "# TYPE cortensor_tasks_total counter",
    ):
        assert name in text, name
    assert "python_gc_objects_collected_total" not in text  # not the global registry


def test_a_foreign_host_header_is_refused(api: StatusApi) -> None:
    """A web page that rebinds its DNS name to 127.0.0.1 sends its own name as Host."""
    assert _request(api, "GET", "/1/summary", headers={"Host": "evil.example"})[0] == 403
    assert _request(api, "GET", "/1/summary", headers={"Host": f"localhost:{api.port}"})[0] == 200


def test_unknown_paths_and_methods(api: StatusApi) -> None:
    assert _request(api, "GET", "/nope")[0] == 404
    assert _request(api, "GET", "/1/commands")[0] == 405
    assert _request(api, "DELETE", "/1/summary")[0] == 405


def test_stop_ends_open_event_streams_and_frees_the_port(api: StatusApi) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/1/events")
    response = conn.getresponse()
    assert response.fp.readline().startswith(b"retry:")
    port = api.port
    api.stop()
    assert response.read() == b"\n"  # the rest of the stream, then EOF (no hang)
    conn.close()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))  # nothing listens there any more


def test_the_token_cannot_redirect_earnings(api: StatusApi) -> None:
    good = {"Authorization": f"Bearer {api.token}"}
    body = json.dumps({"type": "set_payout", "address": "0x" + "ab" * 20})
    status, _, reply = _request(api, "POST", "/1/commands", body, good)
    assert status == 403 and "passphrase" in json.loads(reply)["error"]
    assert api.commands.get(timeout=0) is None  # nothing queued
    assert stat.S_IMODE(api.api_file.stat().st_mode) == 0o600


def test_event_streams_are_capped(api: StatusApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_api, "MAX_EVENT_STREAMS", 1)
    first = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        first.request("GET", "/1/events")
        assert first.getresponse().status == 200
        status, headers, _ = _request(api, "GET", "/1/events")
        assert status == 503 and headers["Retry-After"]
    finally:
        first.close()


def test_a_silent_client_is_dropped_and_connections_are_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_api._Handler, "timeout", 1.0)
    monkeypatch.setattr(status_api, "MAX_CONNECTIONS", 2)
    server = StatusApi(
        SummaryHolder(Summary(started_at=1.0)), EventBus(), CommandQueue(), tmp_path, port=-1
    )
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        idle[0].sendall(b"GET /1/sum")  # half a request line, then nothing
        third = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert third.recv(1) == b""  # both slots are taken: closed at once, no thread for it
        third.close()
        started = time.monotonic()
        for sock in idle:
            assert sock.recv(1024) == b""  # the server hung up after its timeout
        assert time.monotonic() - started < 8
        status, _, _ = _request(server, "GET", "/1/summary")  # slots are free again
        assert status == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()
