"""The audit trail and the event record on a real SQLite file: the hash chain detects an edited,
a deleted and an inserted row (in the store and through ``diemcau audit verify``), updates are
refused, retention keeps the chain verifiable, and what the journal was given survives a
restart of the control plane."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from diemcau.cli import build_parser
from signaling.auth import Passwords
from signaling.control import ControlPlane
from signaling.ops_cli import run_audit
from signaling.store import DB_FILE, SqliteStore
from signaling.store.journal_models import AuditEntry, MeetingEvent, verify_chain


def entry(n: int, **fields: str) -> AuditEntry:
    return AuditEntry(at=1_800_000_000.0 + n, actor=f"account:u{n}", action="api.create_room",
                      room=fields.get("room", "r"), address="192.0.2.7",
                      detail={"method": "POST", "n": n})


async def chained(path: Path, count: int = 10) -> None:
    store = await SqliteStore.open(path)
    try:
        await store.append_audit([entry(n) for n in range(count // 2)])
        await store.append_audit([entry(n) for n in range(count // 2, count)])
    finally:
        await store.close()


async def problems(path: Path) -> list[str]:
    store = await SqliteStore.open(path)
    try:
        anchor, rows = await store.audit_chain()
    finally:
        await store.close()
    return verify_chain(rows, anchor)


async def verify_cli(data_dir: Path) -> int:
    args = build_parser().parse_args(["audit", "--data-dir", str(data_dir), "verify"])
    return await asyncio.to_thread(run_audit, args)


async def test_an_intact_chain_verifies(tmp_path: Path) -> None:
    await chained(tmp_path / DB_FILE)
    assert await problems(tmp_path / DB_FILE) == []
    assert await verify_cli(tmp_path) == 0


async def test_the_chain_detects_an_edited_row(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / DB_FILE
    await chained(path)
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'account:nobody' WHERE seq = 4")
    # Someone with the file drops the trigger and edits a row: the chain still tells.
    conn.execute("DROP TRIGGER audit_append_only")
    conn.execute("UPDATE audit SET address = '10.9.9.9' WHERE seq = 4")
    conn.commit()
    conn.close()
    assert await problems(path) == ["row 4: hash mismatch (row edited)"]
    assert await verify_cli(tmp_path) == 1
    assert "BROKEN row 4: hash mismatch (row edited)" in capsys.readouterr().out


async def test_the_chain_detects_a_deleted_and_an_inserted_row(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    await chained(path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM audit WHERE seq = 6")
    conn.commit()
    assert await problems(path) == ["row 7: rows 6..6 are missing",
                                    "row 7: does not follow row 5 (chain broken)"]
    # Put a forged row 6 back, hashed correctly on its own: it cannot link to row 7.
    from signaling.store.journal_models import audit_hash, canonical_detail

    row5 = conn.execute("SELECT hash FROM audit WHERE seq = 5").fetchone()[0]
    forged = entry(6, room="forged")
    detail = canonical_detail(forged.detail)
    conn.execute("INSERT INTO audit VALUES (6, ?, ?, ?, ?, '', ?, 'ok', ?, ?, ?)",
                 (forged.at, forged.actor, forged.action, forged.room, forged.address, detail,
                  row5, audit_hash(6, forged, detail, row5)))
    conn.commit()
    conn.close()
    assert await problems(path) == ["row 7: does not follow row 6 (chain broken)"]


async def test_retention_prunes_from_the_start_and_the_chain_still_verifies(
        tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    await chained(path, 10)
    store = await SqliteStore.open(path)
    try:
        assert await store.prune_audit(before=1_800_000_000.0 + 3, keep_max=100) == 3
        assert await store.prune_audit(before=0.0, keep_max=5) == 2  # only the newest 5 stay
        head = await store.append_audit([entry(10)])  # chains on after pruning
        anchor, rows = await store.audit_chain()
        assert anchor is not None and anchor[0] == 5
        assert [r.seq for r in rows] == [6, 7, 8, 9, 10, 11] and rows[-1].hash == head
        assert verify_chain(rows, anchor) == []
        assert [r.seq for r in await store.list_audit(room="r", limit=2)] == [11, 10]
    finally:
        await store.close()


async def test_the_journal_survives_a_restart(tmp_path: Path) -> None:
    """Events and audit entries handed to the journal (not yet flushed: a long interval) are
    in the file after the control plane closes, and read back after it opens again."""
    passwords = Passwords.fast()
    control = await ControlPlane.open(tmp_path, passwords=passwords)
    assert control.journal is not None and control.meetings is not None
    control.journal.flush_s = 3600.0
    control.journal.start()
    await control.meetings.joined("r", "p1", "account:a", "A", "member", "192.0.2.1")
    control.meetings.left("r", "p1", "requested", "192.0.2.1")
    control.journal.audit(AuditEntry(at=1.0, actor="account:a", action="api.login",
                                     address="192.0.2.1"))
    assert control.journal.pending == 7  # 4 events, 3 audit entries (join, leave, login)
    await control.close()  # a restart: the server stops ...
    control = await ControlPlane.open(tmp_path, passwords=passwords)  # ... and starts again
    try:
        events = await control.store.list_events(0.0, 1e12)
        assert [e.kind for e in events] == ["room-started", "participant-joined",
                                            "participant-left", "room-finished"]
        anchor, rows = await control.store.audit_chain()
        assert {(r.actor, r.action) for r in rows} == {
            ("account:a", "room.join"), ("account:a", "room.leave"), ("account:a", "api.login")}
        assert verify_chain(rows, anchor) == []
    finally:
        await control.close()


async def test_a_failed_write_is_retried_not_lost(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / DB_FILE)
    from signaling.journal import Journal

    journal = Journal(store)
    calls = {"n": 0}
    real = store.append_events

    async def flaky(events: list[MeetingEvent]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        await real(events)

    store.append_events = flaky  # type: ignore[method-assign]
    journal.event(MeetingEvent(at=1.0, kind="room-started", room="r"))
    await journal.flush()
    assert journal.pending == 1  # kept for the next try
    journal.event(MeetingEvent(at=2.0, kind="room-finished", room="r"))
    await journal.close()
    assert [e.kind for e in await store.list_events(0.0, 10.0)] == ["room-started",
                                                                    "room-finished"]
    await store.close()


async def test_a_token_signed_on_the_command_line_is_audited(tmp_path: Path) -> None:
    await chained(tmp_path / DB_FILE, 2)
    from diemcau.cli import token_create_cli

    args = build_parser().parse_args(["token", "create", "--data-dir", str(tmp_path), "--room",
                                      "demo", "--name", "Anh Ba", "--role", "host"])
    assert await asyncio.to_thread(token_create_cli, args) == 0
    store = await SqliteStore.open(tmp_path / DB_FILE)
    try:
        newest = (await store.list_audit(limit=1))[0]
        anchor, rows = await store.audit_chain()
    finally:
        await store.close()
    assert (newest.action, newest.room, newest.target, newest.address) == (
        "cli.token_create", "demo", "Anh Ba", "local")
    assert newest.actor.startswith("cli:") and '"role":"host"' in newest.detail
    assert verify_chain(rows, anchor) == []


async def test_paged_verification_finds_what_the_whole_walk_finds(tmp_path: Path) -> None:
    from signaling.journal import verify_audit

    path = tmp_path / DB_FILE
    await chained(path, 10)
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_append_only")
    conn.execute("UPDATE audit SET outcome = 'ok' , actor = 'account:x' WHERE seq = 7")
    conn.execute("DELETE FROM audit WHERE seq = 3")
    conn.commit()
    conn.close()
    store = await SqliteStore.open(path)
    try:
        walk = await verify_audit(store, page=3)  # pages of 3: the problems span pages
    finally:
        await store.close()
    assert walk.problems == await problems(path)
    assert walk.problems == ["row 4: rows 3..3 are missing",
                             "row 4: does not follow row 2 (chain broken)",
                             "row 7: hash mismatch (row edited)"]
    assert (walk.rows, walk.first_seq, walk.seq) == (9, 1, 10)
