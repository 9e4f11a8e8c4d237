"""The home database: migrations in order, refusal of newer schemas, all-or-nothing writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
