"""The router's state in the home database: its journal of requests and its API keys.

Request journal, one row per request that may pay, scoped by chain id + genesis hash + the
router's account (a reset devnet never resumes another chain's requests)::

    begin()            SUBMITTING   written before the first transaction of the request
      mark_submitted() SUBMITTED    the task is on chain (session and task id known)
      mark_answered()  ANSWERED     validated, with an answer that passed; spend accounted
      mark_failed()    FAILED       validated with no passing answer (spend accounted), or given up
      mark_not_sent()  NOT_SENT     a restart found no task of this request on chain: nothing paid

A router killed between `begin` and `mark_submitted` cannot know from memory whether its
`submitTask` landed; the chain decides on restart (engine/node/router.py), and a row is never
submitted again, so a request is paid at most once. The unique index on task id means two rows
can never claim one task.

API keys: only the SHA-256 of each secret is stored (the secrets are 32 random bytes, so a plain
hash is enough: there is nothing to guess), compared in constant time. A key carries a spending
cap and a requests-per-minute limit; revoking keeps the row so its spend stays on record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.state.database import Database
from engine.state.journal import ChainKey

KEY_PREFIX = "csk"


class RequestState(StrEnum):
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    ANSWERED = "answered"
    FAILED = "failed"
    NOT_SENT = "not_sent"


OPEN_STATES = (RequestState.SUBMITTING, RequestState.SUBMITTED)


@dataclass(frozen=True)
class RequestRecord:
    id: str
    key_id: str | None
    model: str
    precision: str
    redundancy: int
    price_wei: int
    state: RequestState
    from_block: int | None
    session_id: int | None
    task_id: int | None
    spent_wei: int
    outcome: dict[str, Any] | None
    detail: str
    created_at: float
    updated_at: float


class RequestJournal:
    """One router account's requests on one chain; safe to share between threads."""

    def __init__(self, db: Database, chain: ChainKey, router: str) -> None:
        self.db = db
        self.chain = chain
        self.router = router.lower()
        self._scope = (chain.chain_id, chain.genesis_hash, self.router)

    def begin(
        self,
        request_id: str,
        *,
        key_id: str | None,
        model: str,
        precision: str,
        redundancy: int,
        price_wei: int,
        from_block: int,
    ) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO router_requests (id, chain_id, genesis_hash, router, key_id, model,"
                " precision, redundancy, price_wei, state, from_block, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request_id,
                    *self._scope,
                    key_id,
                    model,
                    precision,
                    redundancy,
                    str(price_wei),
                    RequestState.SUBMITTING.value,
                    from_block,
                    now,
                    now,
                ),
            )

    def mark_submitted(self, request_id: str, session_id: int, task_id: int) -> None:
        self._set(request_id, RequestState.SUBMITTED, session_id=session_id, task_id=task_id)

    def mark_answered(self, request_id: str, spent_wei: int, outcome: dict[str, Any]) -> None:
        self._set(
            request_id,
            RequestState.ANSWERED,
            spent_wei=str(spent_wei),
            outcome=json.dumps(outcome, default=str),
        )

    def mark_failed(
        self,
        request_id: str,
        detail: str,
        spent_wei: int = 0,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        self._set(
            request_id,
            RequestState.FAILED,
            detail=detail,
            spent_wei=str(spent_wei),
            outcome=json.dumps(outcome, default=str) if outcome is not None else None,
        )

    def mark_not_sent(self, request_id: str, detail: str) -> None:
        self._set(request_id, RequestState.NOT_SENT, detail=detail)

    def get(self, request_id: str) -> RequestRecord | None:
        rows = self.db.query(
            "SELECT * FROM router_requests WHERE id = ? AND chain_id = ? AND genesis_hash = ?"
            " AND router = ?",
            (request_id, *self._scope),
        )
        return _request(rows[0]) if rows else None

    def open_requests(self) -> list[RequestRecord]:
        """Rows a restart must settle: maybe submitted, or submitted and not yet validated."""
        return self._where("state IN (?, ?)", tuple(s.value for s in OPEN_STATES))

    def all(self) -> list[RequestRecord]:
        return self._where("1 = 1", ())

    def claimed_tasks(self) -> set[int]:
        rows = self.db.query(
            "SELECT task_id FROM router_requests WHERE chain_id = ? AND genesis_hash = ?"
            " AND router = ? AND task_id IS NOT NULL",
            self._scope,
        )
        return {int(r["task_id"]) for r in rows}

    def _where(self, clause: str, params: tuple[object, ...]) -> list[RequestRecord]:
        rows = self.db.query(
            "SELECT * FROM router_requests WHERE chain_id = ? AND genesis_hash = ? AND router = ?"
            f" AND {clause} ORDER BY created_at, id",
            (*self._scope, *params),
        )
        return [_request(r) for r in rows]

    def _set(self, request_id: str, state: RequestState, **columns: object) -> None:
        # Column names come from this module's callers, never from input.
        sets = ["state = ?", "updated_at = ?", *(f"{name} = ?" for name in columns)]
        with self.db.transaction() as conn:
            conn.execute(
                f"UPDATE router_requests SET {', '.join(sets)} WHERE id = ? AND chain_id = ?"
                " AND genesis_hash = ? AND router = ?",
                (state.value, time.time(), *columns.values(), request_id, *self._scope),
            )


def _request(row: sqlite3.Row) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        key_id=row["key_id"],
        model=row["model"],
        precision=row["precision"],
        redundancy=int(row["redundancy"]),
        price_wei=int(row["price_wei"]),
        state=RequestState(row["state"]),
        from_block=row["from_block"],
        session_id=row["session_id"],
        task_id=row["task_id"],
        spent_wei=int(row["spent_wei"]),
        outcome=json.loads(row["outcome"]) if row["outcome"] else None,
        detail=row["detail"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


# --- API keys ------------------------------------------------------------------------------------


class ApiKeyError(ValueError):
    """A key command that cannot be done (no such key); one line for the user."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    spend_cap_wei: int
    requests_per_minute: int
    spent_wei: int
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "spend_cap_wei": str(self.spend_cap_wei),
            "spent_wei": str(self.spent_wei),
            "requests_per_minute": self.requests_per_minute,
            "created_at": self.created_at,
            "revoked": self.revoked,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKeys:
    """The router's keys in the home database (shared by `router keys` and the server)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, name: str, spend_cap_wei: int, requests_per_minute: int) -> tuple[ApiKey, str]:
        """A new key and its secret: the secret is returned once and never stored."""
        if spend_cap_wei < 0 or requests_per_minute < 1:
            raise ApiKeyError("a key needs a spending cap >= 0 and at least 1 request per minute")
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO router_keys (id, name, secret_sha256, spend_cap_wei,"
                " requests_per_minute, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name,
                    _digest(secret),
                    str(spend_cap_wei),
                    requests_per_minute,
                    time.time(),
                ),
            )
        key = self.get(key_id)
        assert key is not None
        return key, secret

    def list(self) -> list[ApiKey]:
        return [_key(r) for r in self.db.query("SELECT * FROM router_keys ORDER BY created_at")]

    def get(self, key_id: str) -> ApiKey | None:
        rows = self.db.query("SELECT * FROM router_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    def revoke(self, key_id: str) -> ApiKey:
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE router_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (time.time(), key_id),
            ).rowcount
        if not changed:
            raise ApiKeyError(f"no router key {key_id!r} (`router keys list` shows them)")
        key = self.get(key_id)
        assert key is not None
        return key

    def any_active(self) -> bool:
        return bool(self.db.query("SELECT 1 FROM router_keys WHERE revoked_at IS NULL LIMIT 1"))

    def lookup(self, presented: str) -> ApiKey | None:
        """The key a secret belongs to (revoked ones too, so the caller can say so)."""
        parts = presented.strip().split("-", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            return None
        rows = self.db.query("SELECT * FROM router_keys WHERE id = ?", (parts[1],))
        if not rows or not hmac.compare_digest(
            rows[0]["secret_sha256"], _digest(presented.strip())
        ):
            return None
        return _key(rows[0])

    def add_spend(self, key_id: str, wei: int) -> None:
        if wei <= 0:
            return
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT spent_wei FROM router_keys WHERE id = ?", (key_id,)
            ).fetchone()
            if row is None:
                return
            conn.execute(
                "UPDATE router_keys SET spent_wei = ? WHERE id = ?",
                (str(int(row[0]) + wei), key_id),
            )


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        spend_cap_wei=int(row["spend_cap_wei"]),
        requests_per_minute=int(row["requests_per_minute"]),
        spent_wei=int(row["spent_wei"]),
        created_at=float(row["created_at"]),
        revoked_at=row["revoked_at"],
    )
