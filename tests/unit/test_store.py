"""The store against a real SQLite file and a real PostgreSQL (``store`` fixture): migrations,
case-sensitivity, atomic invitations, crash safety, and the weekly schedule helper."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.auth import Passwords
from signaling.store import (
    Conflict,
    InvitationUnusable,
    JoinRecord,
    Meeting,
    NotFound,
    SqliteStore,
    is_on,
)
from signaling.store.migrations import MIGRATIONS
from signaling.store.schedule import check_meeting_times, next_start
from tests.pgproc import open_store_for

ROOT = Path(__file__).resolve().parents[2]
ICT = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
async def store(tmp_path: Path, store_url: str | None) -> AsyncIterator[SqliteStore]:
    s = await open_store_for(tmp_path, store_url)
    yield s
    await s.close()


async def test_migrations_are_idempotent_and_keep_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = await SqliteStore.open(path)
    assert await first.schema_version() == len(MIGRATIONS)
    org = await first.create_organisation("Sở TT&TT")
    await first.close()
    for _ in range(2):
        again = await SqliteStore.open(path)
        assert await again.schema_version() == len(MIGRATIONS)
        assert await again.list_organisations() == [org]
        await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_room_and_user_names_are_case_sensitive(store: SqliteStore) -> None:
    org = await store.create_organisation("UBND")
    upper = await store.create_room("Hop", org.id)
    lower = await store.create_room("hop", org.id)
    assert upper.id != lower.id
    assert (await store.get_room("Hop")).id == upper.id
    assert await store.find_room("HOP") is None
    with pytest.raises(Conflict):
        await store.create_room("Hop", org.id)
    await store.create_account("An", "An", "member", org.id, "x")
    await store.create_account("an", "an", "member", org.id, "x")
    with pytest.raises(Conflict):
        await store.create_account("An", "again", "member", org.id, "x")
    assert (await store.find_account("an")).display_name == "an"  # type: ignore[union-attr]


async def test_room_passwords_are_case_sensitive(store: SqliteStore) -> None:
    passwords = Passwords.fast()
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id, password_hash=await passwords.hash("MatKhau"))
    assert await passwords.verify(room.password_hash, "MatKhau")
    assert not await passwords.verify(room.password_hash, "matkhau")
    assert not await passwords.verify(room.password_hash, "MATKHAU")


async def test_rooms_members_and_updates(store: SqliteStore) -> None:
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id, capacity=10)
    account = await store.create_account("m", "M", "member", org.id, "h")
    await store.add_member(room.id, account.id)
    with pytest.raises(Conflict):
        await store.add_member(room.id, account.id)
    with pytest.raises(NotFound):
        await store.add_member(room.id, 999)
    assert await store.is_member(room.id, account.id)
    assert [r.name for r in await store.list_rooms(member_id=account.id)] == ["r"]
    updated = await store.update_room("r", locked=True, capacity=5)
    assert updated.locked and updated.capacity == 5
    with pytest.raises(ValueError, match="org_id"):
        await store.update_room("r", org_id=2)
    with pytest.raises(Conflict):  # the organisation still owns the room
        await store._write(lambda c: c.execute("DELETE FROM organisations"))
    await store.delete_room("r")
    assert not await store.is_member(room.id, account.id)  # cascaded
    with pytest.raises(NotFound):
        await store.delete_room("r")


async def test_invitation_consume_is_atomic_under_20_consumers(tmp_path: Path,
                                                              store_url: str | None) -> None:
    # Two stores on one file (as the server and the CLI would be) or one PostgreSQL database
    # (two nodes: eight connections).
    a, b = await open_store_for(tmp_path, store_url), await open_store_for(tmp_path, store_url)
    org = await a.create_organisation("o")
    room = await a.create_room("r", org.id)
    await a.create_invitation(room.id, "five", max_uses=5, expires_at=2e9)
    await a.create_invitation(room.id, "one", max_uses=1, expires_at=2e9)

    async def consume(store: SqliteStore, token_hash: str) -> str:
        try:
            await store.consume_invitation(token_hash, room.id, now=1e9)
            return "ok"
        except InvitationUnusable as exc:
            return exc.reason

    for token_hash, uses in (("five", 5), ("one", 1)):
        results = await asyncio.gather(*(consume(a if i % 2 else b, token_hash)
                                         for i in range(20)))
        assert results.count("ok") == uses
        assert results.count("used-up") == 20 - uses
    assert [i.uses_left for i in await a.list_invitations(room.id)] == [0, 0]
    await a.close()
    await b.close()


async def test_invitation_refusals(store: SqliteStore) -> None:
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id)
    other = await store.create_room("s", org.id)
    invitation = await store.create_invitation(room.id, "h", max_uses=2, expires_at=100.0)
    reasons = []
    for token_hash, room_id, now in (("nope", room.id, 1.0), ("h", other.id, 1.0),
                                     ("h", room.id, 100.0)):
        with pytest.raises(InvitationUnusable) as caught:
            await store.consume_invitation(token_hash, room_id, now)
        reasons.append(caught.value.reason)
    await store.revoke_invitation(room.id, invitation.id)
    with pytest.raises(InvitationUnusable) as caught:
        await store.consume_invitation("h", room.id, 1.0)
    assert reasons + [caught.value.reason] == ["unknown", "wrong-room", "expired", "revoked"]
    assert (await store.list_invitations(room.id))[0].uses_left == 2  # refusals spend nothing


async def test_meetings_endpoints_sessions_and_audit(store: SqliteStore) -> None:
    org = await store.create_organisation("o")
    room = await store.create_room("r", org.id)
    account = await store.create_account("m", "M", "member", org.id, "h")
    device = await store.create_endpoint("Phòng họp 1", org.id, "secret-hash")
    meeting = await store.create_meeting(room.id, "Giao ban", "2025-01-06", "08:00", "10:00",
                                         account_ids=(account.id,), endpoint_ids=(device.id,))
    assert meeting.account_ids == (account.id,) and meeting.endpoint_ids == (device.id,)
    assert await store.list_meetings(endpoint_id=device.id) == [meeting]
    with pytest.raises(NotFound):
        await store.create_meeting(room.id, "x", "2025-01-06", "08:00", "09:00",
                                   endpoint_ids=(42,))
    assert len(await store.list_meetings(room.id)) == 1  # the failed one left nothing behind
    await store.touch_endpoint(device.id, 123.0)
    assert (await store.get_endpoint(device.id)).last_seen_at == 123.0

    await store.create_api_session("tok", account.id, expires_at=200.0)
    assert (await store.api_session_account("tok", 100.0)) == account
    assert await store.api_session_account("tok", 200.0) is None  # expired
    await store.set_account_password(account.id, "new")  # ends its sessions
    assert await store.api_session_account("tok", 100.0) is None

    await store.record_join(JoinRecord(1.0, "r", "account:1", "member", "10.0.0.1", "admitted"))
    assert [j.outcome for j in await store.list_joins("r")] == ["admitted"]


CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from signaling.store import SqliteStore

    async def main():
        store = await SqliteStore.open(Path(sys.argv[1]))
        org_id = (await store.list_organisations())[0].id
        def pair(c, i):
            room = c.execute("INSERT INTO rooms (name, org_id, capacity, kind, created_at) "
                             "VALUES (?, ?, 26, 'multipoint', 0) RETURNING id",
                             (f"{sys.argv[2]}{i}", org_id)).fetchone()[0]
            c.execute("INSERT INTO invitations (room_id, token_hash, max_uses, uses_left, "
                      "expires_at, created_at) VALUES (?, ?, 1, 1, 0, 0)", (room, f"t{room}"))
            if sys.argv[2] == "stuck":
                print("inside", flush=True)
                time.sleep(60)  # killed here, mid-transaction
        for i in range(10**6):
            await store._write(lambda c: pair(c, i))
            if i == 20:
                print("ready", flush=True)
    asyncio.run(main())
""")


def _run_and_kill(path: Path, mode: str, wait_for: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == wait_for
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)


async def test_crash_mid_transaction_leaves_the_database_consistent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await SqliteStore.open(path)
    org = await store.create_organisation("o")
    before = await store.create_room("committed", org.id)
    await store.close()

    # Killed inside a transaction (rows written, not committed), then killed while committing
    # transaction after transaction.
    await asyncio.to_thread(_run_and_kill, path, "stuck", "inside")
    await asyncio.to_thread(_run_and_kill, path, "loop", "ready")

    store = await SqliteStore.open(path)  # recovers the WAL; the lock died with the process
    try:
        assert await store._read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) \
            == "ok"
        assert await store.get_room("committed") == before
        assert await store.find_room("stuck0") is None  # the uncommitted transaction is gone
        rooms = [r for r in await store.list_rooms() if r.name.startswith("loop")]
        assert len(rooms) > 20
        with_invitation = await store._read(lambda c: c.execute(
            "SELECT count(*) FROM rooms r JOIN invitations i ON i.room_id = r.id "
            "WHERE r.name LIKE 'loop%'").fetchone()[0])
        assert with_invitation == len(rooms)  # no transaction half-applied
        await store.create_room("after", org.id)  # and the file is writable again
    finally:
        await store.close()


def _meeting(**overrides: object) -> Meeting:
    fields: dict[str, object] = dict(id=1, room_id=1, title="t", first_date="2025-01-06",
                                     start="08:00", end="10:00", weekly=True, until=None,
                                     utc_offset_min=420)
    fields.update(overrides)
    return Meeting(**fields)  # type: ignore[arg-type]


def _t(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ICT).timestamp()


def test_weekly_schedule() -> None:
    meeting = _meeting()  # Mondays 08:00-10:00 Vietnam time from 6 January 2025
    assert is_on(meeting, _t("2025-01-06T08:00"))
    assert is_on(meeting, _t("2025-01-13T09:59"))
    assert not is_on(meeting, _t("2025-01-13T10:00"))
    assert not is_on(meeting, _t("2025-01-14T08:30"))  # a Tuesday
    assert not is_on(meeting, _t("2024-12-30T08:30"))  # before the first date
    assert is_on(meeting, _t("2025-01-13T07:50"), early_s=15 * 60)
    assert not is_on(meeting, _t("2025-01-13T07:40"), early_s=15 * 60)
    assert next_start(meeting, _t("2025-01-07T00:00")) == _t("2025-01-13T08:00")
    once = _meeting(weekly=False)
    assert not is_on(once, _t("2025-01-13T08:30"))
    assert next_start(once, _t("2025-01-07T00:00")) is None
    ended = _meeting(until="2025-01-10")
    assert not is_on(ended, _t("2025-01-13T08:30"))
    with pytest.raises(ValueError, match="end"):
        check_meeting_times("2025-01-06", "10:00", "09:00", None)
    with pytest.raises(ValueError, match="until"):
        check_meeting_times("2025-01-06", "08:00", "09:00", "2025-01-01")
