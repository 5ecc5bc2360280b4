"""Migration 6 (issue 12) on a real SQLite file: the room setting, chat lines by meeting,
documents by room."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signaling.store import ChatMessage, NotFound, SqliteStore
from signaling.store.migrations import MIGRATIONS
from tests.pgproc import open_store_for


async def test_a_version_3_database_gains_the_setting_off(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (3)")
    conn.execute("INSERT INTO organisations (name, created_at) VALUES ('O', 0)")
    conn.execute("INSERT INTO rooms (name, org_id, capacity, kind, created_at) "
                 "VALUES ('Cu', 1, 26, 'multipoint', 0)")
    conn.commit()
    conn.close()
    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        assert (await store.get_room("Cu")).guest_password_join is False
        changed = await store.update_room("Cu", guest_password_join=True)
        assert changed.guest_password_join is True
    finally:
        await store.close()


async def test_chat_lines_belong_to_one_meeting(tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        org = await store.create_organisation("O")
        room = await store.create_room("Hop", org.id)
        line = ChatMessage(0, "Hop", "m1", 1.0, "guest:x", "Lan", "một")
        first = await store.add_chat(room.id, line)
        await store.add_chat(room.id, ChatMessage(0, "Hop", "m1", 2.0, "guest:x", "Lan", "hai"))
        await store.add_chat(room.id, ChatMessage(0, "Hop", "m2", 3.0, "guest:x", "Lan", "khác"))
        assert [m.text for m in await store.list_chat("Hop", "m1", 10)] == ["một", "hai"]
        assert [m.text for m in await store.list_chat("Hop", "m1", 1)] == ["hai"]  # newest
        assert await store.delete_chat("Hop", "m2", first.id, "account:1") is None  # not now
        deleted = await store.delete_chat("Hop", "m1", first.id, "account:1")
        assert deleted is not None and deleted.text == "" and deleted.deleted_by == "account:1"
        assert await store.delete_chat("Hop", "m1", first.id, "account:1") is None  # once
        assert await store.delete_chat("Khac", "m1", first.id + 1, "account:1") is None
        assert [m.text for m in await store.list_chat("Hop", "m1", 10)] == ["hai"]
    finally:
        await store.close()


async def test_documents_are_kept_per_room(tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        org = await store.create_organisation("O")
        a = await store.create_room("A", org.id)
        b = await store.create_room("B", org.id)
        doc = await store.add_document(a.id, "x.pdf", "pdf", 10, "0" * 64, "s1.pdf", "account:1",
                                       5.0)
        assert [d.id for d in await store.list_documents(a.id)] == [doc.id]
        assert await store.list_documents(b.id) == []
        with pytest.raises(NotFound):
            await store.get_document(b.id, doc.id)  # another room's id answers as unknown
        await store.delete_room("A")
        with pytest.raises(NotFound):
            await store.get_document(a.id, doc.id)
    finally:
        await store.close()
