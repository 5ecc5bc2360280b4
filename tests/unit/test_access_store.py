"""The store and helpers behind access control (security issue 8), on a real SQLite file: the
migration that gives existing rooms an instance, void-before times, removals, the join audit's
merging and retention, per-address rate-limit keys, and command-line tokens bound to the room."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.audit import MAX_OPEN, JoinAudit
from signaling.auth import load_or_create_secret, verify_join_token
from signaling.ratelimit import account_key, address_key
from signaling.store import DB_FILE, JoinRecord, NotFound, SqliteStore
from signaling.store.migrations import MIGRATIONS
from tests.pgproc import open_store_for


@pytest.fixture
async def store(tmp_path: Path, store_url: str | None) -> AsyncIterator[SqliteStore]:
    s = await open_store_for(tmp_path, store_url)
    yield s
    await s.close()


async def test_migration_gives_existing_rooms_distinct_instances(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)  # a database of the first schema, with two rooms
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO organisations VALUES (1, 'o', 0)")
    for name in ("a", "b"):
        conn.execute("INSERT INTO rooms (name, org_id, capacity, kind, created_at) "
                     "VALUES (?, 1, 26, 'multipoint', 0)", (name,))
    conn.commit()
    conn.close()
    store = await SqliteStore.open(path)
    try:
        a, b = await store.get_room("a"), await store.get_room("b")
        assert len(a.instance) == 32 and a.instance != b.instance
        assert a.tokens_void_before == 0.0
        fresh = await store.create_room("c", 1)
        assert len(fresh.instance) == 32 and fresh.instance not in (a.instance, b.instance)
    finally:
        await store.close()


async def test_void_before_only_moves_forward(store: SqliteStore) -> None:
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id)
    account = await store.create_account("u", "U", "member", org.id, "h")
    assert await store.void_room_tokens(room.id, 100.0) == 100.0
    assert await store.void_room_tokens(room.id, 50.0) == 100.0  # no un-voiding
    assert (await store.get_room("r")).tokens_void_before == 100.0
    assert await store.void_account_tokens(account.id, 70.0) == 70.0
    assert (await store.get_account(account.id)).tokens_void_before == 70.0
    with pytest.raises(NotFound):
        await store.void_room_tokens(999, 1.0)


async def test_removals_expire_and_go_with_the_room(store: SqliteStore) -> None:
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id)
    await store.add_removal(room.id, "guest:1:x", until=200.0)
    assert await store.is_removed(room.id, "guest:1:x", now=199.0)
    assert not await store.is_removed(room.id, "guest:1:x", now=200.0)
    assert not await store.is_removed(room.id, "guest:1:y", now=0.0)
    await store.delete_room("r")
    again = await store.create_room("r", org.id)
    assert not await store.is_removed(again.id, "guest:1:x", now=0.0)


async def test_join_audit_retention(store: SqliteStore) -> None:
    for i in range(10):
        await store.record_join(JoinRecord(float(i), "r", f"id{i}", "guest", "a", "admitted"))
    assert await store.prune_joins(before=3.0, keep_max=100) == 3  # older than retention
    assert await store.prune_joins(before=0.0, keep_max=4) == 3  # beyond the newest 4
    assert [j.at for j in await store.list_joins()] == [9.0, 8.0, 7.0, 6.0]
    assert await store.prune_joins(before=0.0, keep_max=4) == 0


async def test_join_audit_merges_repeats(store: SqliteStore) -> None:
    audit = JoinAudit(store, merge_s=60.0, retention_s=1e9)

    def attempt(at: float, outcome: str = "not-invited", room: str = "r",
                address: str = "10.0.0.1") -> None:
        audit.record(JoinRecord(at, room, "?", "?", address, outcome))

    for i in range(50):
        attempt(1000.0 + i * 0.5)  # 50 repeats within a minute: one record
    for i in range(30):  # rate-limited refusals merge per address, whatever the room
        attempt(1000.0 + i, "rate-limited", room=f"room{i}")
    attempt(1001.0, address="10.0.0.2")  # another address: its own record
    attempt(1070.0)  # the window has closed: a new record
    await audit.close()
    joins = await store.list_joins(limit=1000)
    assert sorted((j.outcome, j.address, j.count) for j in joins) == [
        ("not-invited", "10.0.0.1", 1), ("not-invited", "10.0.0.1", 50),
        ("not-invited", "10.0.0.2", 1), ("rate-limited", "10.0.0.1", 30)]
    merged = next(j for j in joins if j.count == 50)
    assert (merged.at, merged.last_at) == (1000.0, 1024.5)


async def test_join_audit_memory_is_bounded(store: SqliteStore) -> None:
    assert JoinAudit(store).max_open == MAX_OPEN
    audit = JoinAudit(store, max_open=20)
    for i in range(70):
        audit.record(JoinRecord(5.0, "r", f"id{i % 35}", "?", "a", "not-invited"))
    assert len(audit._open) == 20  # the oldest windows were closed early ...
    await audit.close()
    joins = await store.list_joins(limit=1000)
    assert sum(j.count for j in joins) == 70  # ... and nothing was lost


def test_rate_limit_keys() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    # One bucket per IPv6 /64 (a client owns the whole /64), and IPv4-mapped is IPv4.
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("?") == "?"
    assert account_key("lan", "203.0.113.9") != account_key("lan", "203.0.113.10")


async def test_command_line_tokens_are_bound_to_the_stored_room(tmp_path: Path) -> None:
    from signaling.control import token_create

    store = await SqliteStore.open(tmp_path / DB_FILE)
    org = await store.create_organisation("o")
    room = await store.create_room("Hop", org.id)
    await store.close()
    token, _link = token_create(tmp_path, "Hop", "Chủ tọa", role="host", ttl_s=60)
    grants = verify_join_token(load_or_create_secret(tmp_path), token, time.time(), "Hop")
    assert grants.room_instance == room.instance
    token, _link = token_create(tmp_path, "Mo", "Khách", ttl_s=60)  # no such room (yet)
    assert verify_join_token(load_or_create_secret(tmp_path), token, time.time(),
                             "Mo").room_instance is None
