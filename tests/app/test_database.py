"""The home database: migrations in order, refusal of newer schemas, all-or-nothing writes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.state.database import MIGRATIONS, Database, DatabaseError


def test_fresh_database_is_at_the_latest_schema(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    assert db.schema_version == len(MIGRATIONS)
    db.cache_put("probe", {"cores": 2})
    assert db.cache_get("probe") == {"cores": 2}
    assert db.cache_get("probe", max_age_s=-1) is None
    db.close()


def test_old_database_upgrades_in_place_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    conn.execute("INSERT INTO cache VALUES ('k', '1', 0)")
    conn.commit()
    conn.close()
    db = Database(path)
    assert db.schema_version == len(MIGRATIONS)
    assert db.cache_get("k") == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(DatabaseError, match="newer cortensor-desktop"):
        Database(path)


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO cache VALUES ('half', '1', 0)")
        raise RuntimeError("crash mid-write")
    assert db.cache_get("half") is None


def test_corrupt_database_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="cannot open the database"):
        Database(path)


def _open_when_released(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        db = Database(Path(path))
        results.put(("ok", db.schema_version))
        db.close()
    except Exception as exc:  # reported to the test, which shows it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_migrating_at_once_end_with_one_schema_and_no_error(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(6):  # the race is a window, not a certainty: open it several times
        path = tmp_path / f"db{round_}.sqlite3"
        barrier, results = context.Barrier(3), context.Queue()
        procs = [
            context.Process(target=_open_when_released, args=(str(path), barrier, results))
            for _ in range(3)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == [("ok", len(MIGRATIONS))] * 3, outcomes
        conn = sqlite3.connect(path)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        conn.close()
        assert len(tables) == len(set(tables)) and "cache" in tables
