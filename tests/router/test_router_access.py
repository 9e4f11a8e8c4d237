"""API keys: the CLI that makes them, the database that keeps only their hashes, and the
router's answers to no key, a wrong key, a revoked key, a spent cap and a busy key."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from cortensor_desktop.hosting.router_host import OwnValidator, tokenizer_resolver
from cortensor_desktop.service.router_api import Access, Front, RouterServer, Tokens, check_bind
from engine.state.database import Database
from engine.state.router_store import ApiKeys
from tests.conftest import CliResult
from tests.router.conftest import MODEL, RoutedNetwork

CHAT = [{"role": "user", "content": "Hi"}]


def _no_key(base_url: str) -> tuple[int, dict[str, Any]]:
    """A request without Authorization (the openai package always sends one)."""
    request = urllib.request.Request(
        base_url + "/chat/completions",
        data=json.dumps({"model": MODEL, "messages": CHAT}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_keys_cli_adds_lists_and_revokes_and_stores_only_a_hash(home: Path, cli) -> None:  # type: ignore[no-untyped-def]
    added: CliResult = cli(
        "router", "keys", "add", "alice", "--cap-eth", "0.01", "--rpm", "5", "--json"
    )
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)
    assert key["key"].startswith(f"csk-{key['id']}-")
    assert key["spend_cap_wei"] == str(10**16) and key["requests_per_minute"] == 5
    listed = json.loads(cli("router", "keys", "list", "--json").stdout)["keys"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    database = next(home.rglob("*.sqlite3"))
    dump = "\n".join(sqlite3.connect(database).iterdump())
    assert key["key"] not in dump  # only its SHA-256
    revoked = cli("router", "keys", "revoke", key["id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = json.loads(cli("router", "keys", "list", "--json").stdout)["keys"]
    assert again[0]["revoked"] is True
    missing = cli("router", "keys", "revoke", "nope")
    assert missing.returncode == 2 and "no router key 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_router_refuses_to_listen_beyond_loopback_without_flag_and_keys(home: Path, cli) -> None:  # type: ignore[no-untyped-def]
    no_flag = cli("router", "--host", "0.0.0.0")
    assert no_flag.returncode == 2 and "--allow-remote" in no_flag.stderr
    no_keys = cli("router", "--host", "0.0.0.0", "--allow-remote")
    assert no_keys.returncode == 2 and "without API keys" in no_keys.stderr
    assert "Traceback" not in no_flag.stderr + no_keys.stderr


def test_check_bind(tmp_path: Path) -> None:
    keys = ApiKeys(Database(tmp_path / "db.sqlite3"))
    assert check_bind("127.0.0.1", False, keys) is False
    with pytest.raises(ValueError, match="allow-remote"):
        check_bind("0.0.0.0", False, keys)
    keys.add("bob", 10**18, 60)
    assert check_bind("0.0.0.0", True, keys) is True  # then every request needs a key


@pytest.mark.llama
@pytest.mark.timeout(300)
def test_keys_guard_every_request_with_clear_statuses(routed: RoutedNetwork) -> None:
    # The shared home's keys (the router charges spend there); all revoked at the end, so the
    # shared router is open again for the other tests.
    keys = ApiKeys(routed.db)
    router = routed.router
    front = Front(
        router,
        Access(keys, False, router.settings.price_wei),
        Tokens(tokenizer_resolver(routed.models_dir)),
        MODEL,
    )
    server = RouterServer(front, "127.0.0.1", 0)
    server.start()

    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)

    try:
        _, good = keys.add("good", 10**17, 60)
        _, broke = keys.add("broke", 0, 60)
        _, slow = keys.add("slow", 10**17, 1)
        revoked_key, revoked = keys.add("gone", 10**17, 60)
        keys.revoke(revoked_key.id)
        status, body = _no_key(server.url)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert "router keys add" in body["error"]["message"]
        cases = [
            ("csk-00000000-wrong", openai.AuthenticationError, "invalid_api_key"),
            (revoked, openai.PermissionDeniedError, "key_revoked"),
            (broke, openai.RateLimitError, "insufficient_quota"),
        ]
        for key, error, code in cases:
            with pytest.raises(error) as caught:
                client(key).chat.completions.create(model=MODEL, messages=CHAT)
            assert caught.value.body["code"] == code  # type: ignore[index]
        assert client(slow).models.list().data  # one request a minute: the first passes
        with pytest.raises(openai.RateLimitError) as limited:
            client(slow).models.list()
        assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        assert int(limited.value.response.headers["Retry-After"]) > 0
        # a good key is served, and what its request cost is charged to it
        reply = client(good).chat.completions.create(model=MODEL, messages=CHAT, max_tokens=6)
        spent = int(reply.model_extra["cortensor"]["spent_wei"])
        good_key = keys.lookup(good)
        assert good_key is not None and good_key.spent_wei == spent > 0
        record = router.journal.get(reply.model_extra["cortensor"]["request_id"])
        assert record is not None and record.key_id == good_key.id
    finally:
        server.stop()
        for key in keys.list():
            keys.revoke(key.id)


@pytest.mark.llama
@pytest.mark.timeout(300)
def test_a_router_closes_the_validator_workers_it_built_for_itself(
    routed: RoutedNetwork,
) -> None:
    """`router serve` builds its own validator on the first /api/v1/validate; stopping the
    router closes those workers, where a borrowed one (the oracle's) stays with its owner."""
    router = routed.router
    own = OwnValidator(routed.models_dir, MODEL)
    front = Front(
        router,
        Access(ApiKeys(routed.db), False, router.settings.price_wei),
        Tokens(tokenizer_resolver(routed.models_dir)),
        MODEL,
        validator=own,
    )
    server = RouterServer(front, "127.0.0.1", 0)
    server.start()
    try:
        request = urllib.request.Request(
            server.url.removesuffix("/v1") + "/api/v1/validate",
            data=json.dumps({"prompt": "Hi", "answer": "Hello!", "max_tokens": 8}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200 and "passed" in json.loads(response.read())
        pids = [worker.pid for worker in own.workers]
        assert len(pids) >= 2 and all(pid is not None and psutil.pid_exists(pid) for pid in pids)
    finally:
        server.stop()
    assert own.workers == [] and not any(psutil.pid_exists(pid) for pid in pids if pid)
    oracle = routed.network.oracle
    assert oracle is not None
    borrowed = Front(router, front.access, front.tokens, MODEL, validator=lambda: oracle.validator)
    assert borrowed.judge() is oracle.validator
    borrowed.close()
    chat_pid = oracle.validator.chat.pid
    assert chat_pid is not None and psutil.pid_exists(chat_pid)  # still the oracle's
