"""Migration 5 (issue 13) on a store made by the previous release: the support role is allowed,
nothing referencing accounts is lost (the CHECK is widened in place, no table rebuild), and a
role outside the list is still refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signaling.store import Conflict
from signaling.store.migrations import MIGRATIONS
from signaling.store.sqlite import SqliteStore


def old_store(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            assert isinstance(statement, str)
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (3)")
    conn.execute("INSERT INTO organisations VALUES (1, 'Hue', 0)")
    conn.execute("INSERT INTO accounts (id, username, display_name, role, org_id, "
                 "password_hash, created_at) VALUES (7, 'lan', 'Lan', 'host', 1, 'h', 0)")
    conn.execute("INSERT INTO rooms (id, name, org_id, capacity, kind, created_at, instance) "
                 "VALUES (3, 'hue', 1, 26, 'multipoint', 0, 'abc')")
    conn.execute("INSERT INTO memberships VALUES (3, 7)")
    conn.close()


async def test_migration_4_widens_roles_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    old_store(path)
    store = await SqliteStore.open(path)
    try:
        accounts = {a.username: a for a in await store.list_accounts()}
        assert (accounts["lan"].id, accounts["lan"].role) == (7, "host")
        support = await store.create_account("hotro", "Ho tro", "support", None, "h")
        assert support.role == "support"
        with pytest.raises(Conflict):
            await store.create_account("x", "x", "admin", None, "h")  # type: ignore[arg-type]
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT * FROM memberships").fetchall() == [(3, 7)]
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        assert version == len(MIGRATIONS)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
