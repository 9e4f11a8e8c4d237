"""One SQLite database per home: the only place for state that must survive a restart.

Migrations are numbered and append-only: `MIGRATIONS[i]` takes the schema from version i to i+1,
and `PRAGMA user_version` records where a database stands, so an old home upgrades in place and
a newer home is refused rather than misread. To add state, append a migration; never edit one
that has shipped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DatabaseError(Exception):
    """The database cannot be opened or is from a newer version of the app."""


MIGRATIONS: list[str] = [
    # 1: a small key/value cache (hardware probe, bandwidth) with the time it was written.
    """
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 2: benchmark results written by the inference runtime, read by the profiler's fit.
    """
    CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_id TEXT NOT NULL,
        quant TEXT NOT NULL,
        created_at REAL NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX benchmarks_model ON benchmarks (model_id, quant, created_at);
    """,
    # 3: the crash-safe journal (engine/state/journal.py): salt + answer bound before a precommit
    # is sent,
    # and every transaction's intent (nonce, hash) recorded before it is broadcast. Keyed by chain
    # id + genesis hash + node, so a reset devnet or another chain is never mistaken for this one.
    """
    CREATE TABLE journal_commits (
        chain_id INTEGER NOT NULL,
        genesis_hash TEXT NOT NULL,
        node TEXT NOT NULL,
        task_kind TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        role TEXT NOT NULL,
        state TEXT NOT NULL,
        salt TEXT NOT NULL,
        answer TEXT NOT NULL,
        precommit_tx TEXT,
        commit_tx TEXT,
        note TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (chain_id, genesis_hash, node, task_kind, session_id, task_id)
    );
    CREATE INDEX journal_commits_state ON journal_commits (chain_id, genesis_hash, node, state);
    CREATE TABLE journal_txs (
        chain_id INTEGER NOT NULL,
        genesis_hash TEXT NOT NULL,
        node TEXT NOT NULL,
        intent_key TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        nonce INTEGER NOT NULL,
        tx_hash TEXT,
        raw_tx TEXT,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (chain_id, genesis_hash, node, intent_key)
    );
    CREATE INDEX journal_txs_state ON journal_txs (chain_id, genesis_hash, node, state);
    """,
    # 4: history for the wallet screen (earnings/points, CSV export) and the last verdicts per
    # miner (the pool-removal window). Amounts are decimal TEXT: wei overflow SQLite's 64 bits.
    """
    CREATE TABLE earnings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL,
        genesis_hash TEXT NOT NULL,
        node TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        amount_wei TEXT NOT NULL,
        points INTEGER NOT NULL,
        task_kind TEXT,
        session_id INTEGER,
        task_id INTEGER,
        tx_hash TEXT,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX earnings_node_time ON earnings (chain_id, genesis_hash, node, at);
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL,
        genesis_hash TEXT NOT NULL,
        miner TEXT NOT NULL,
        at REAL NOT NULL,
        task_kind TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        passed INTEGER NOT NULL,
        failed_checks TEXT NOT NULL,
        top1_agreement REAL,
        cosine REAL
    );
    CREATE INDEX verdicts_miner ON verdicts (chain_id, genesis_hash, miner, id);
    CREATE UNIQUE INDEX verdicts_task
        ON verdicts (chain_id, genesis_hash, miner, task_kind, session_id, task_id);
    """,
    # 5: the router (engine/node/router.py): its journal of requests, one row per request that
    # may pay (written before the first transaction, so a restart finds the task and never
    # submits it again), and its API keys (only a SHA-256 of each secret; spend in wei as TEXT).
    """
    CREATE TABLE router_requests (
        id TEXT PRIMARY KEY,
        chain_id INTEGER NOT NULL,
        genesis_hash TEXT NOT NULL,
        router TEXT NOT NULL,
        key_id TEXT,
        model TEXT NOT NULL,
        precision TEXT NOT NULL,
        redundancy INTEGER NOT NULL,
        price_wei TEXT NOT NULL,
        state TEXT NOT NULL,
        from_block INTEGER,
        session_id INTEGER,
        task_id INTEGER,
        spent_wei TEXT NOT NULL DEFAULT '0',
        outcome TEXT,
        detail TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX router_requests_state ON router_requests (chain_id, genesis_hash, router, state);
    CREATE UNIQUE INDEX router_requests_task
        ON router_requests (chain_id, genesis_hash, task_id) WHERE task_id IS NOT NULL;
    CREATE TABLE router_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        spend_cap_wei TEXT NOT NULL,
        requests_per_minute INTEGER NOT NULL,
        spent_wei TEXT NOT NULL DEFAULT '0',
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
]


def _enable_wal(conn: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Switch to WAL. Two processes opening a new file at once can get "database is locked"
    here at once: SQLite does not call the busy handler for the journal-mode change, so this
    retries it (briefly, bounded) as the busy handler would."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration one by one (executescript would commit on its own, and a
    migration must run inside the caller's BEGIN IMMEDIATE)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


class Database:
    """A thread-safe handle: one connection, serialised by a lock, WAL so readers never block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            _enable_wal(self._conn)
            # FULL, not NORMAL: with WAL, NORMAL survives a killed process but a power cut may
            # drop the last commits, and a journaled salt whose precommit is already on chain
            # is then lost (the answer can never be revealed). The journal writes a few rows
            # per task, so the fsync per commit costs nothing that matters.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{path}: cannot open the database: {exc}") from None
        self._lock = threading.RLock()
        self.migrate()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the schema up to date under one write lock (`BEGIN IMMEDIATE`): the version is
        read inside it, so a second process opening the same home at the same moment waits
        and then finds the schema current, instead of running the migrations again."""
        with self._lock:
            if self.schema_version == len(MIGRATIONS):
                return  # the usual case: no write lock taken at all
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = self.schema_version
                if current > len(MIGRATIONS):
                    raise DatabaseError(
                        f"{self.path}: written by a newer cortensor-desktop (schema {current}, "
                        f"this version knows {len(MIGRATIONS)}); upgrade the app"
                    )
                for version in range(current, len(MIGRATIONS)):
                    for statement in _statements(MIGRATIONS[version]):
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {version + 1}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on error: all or nothing survives a crash."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return list(cursor.fetchall())

    def cache_get(self, key: str, max_age_s: float | None = None) -> Any | None:
        rows = self.query("SELECT value, updated_at FROM cache WHERE key = ?", (key,))
        if not rows:
            return None
        if max_age_s is not None and time.time() - float(rows[0]["updated_at"]) > max_age_s:
            return None
        return json.loads(rows[0]["value"])

    def cache_put(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO cache (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, json.dumps(value), time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
