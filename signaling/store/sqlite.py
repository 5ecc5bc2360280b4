"""``SqliteStore``: the embedded default store, one SQLite file in the data directory.

Every call runs on one dedicated thread that owns the only connection, so the event loop never
blocks on disk and the writes of this process are serialised without locks of our own. Each write
is a ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before reading, so a
read-modify-write (consuming an invitation) cannot lose an update even against another process
(the CLI) on the same file. WAL with ``synchronous=FULL`` makes every commit durable and a crash
mid-transaction leaves the last committed state.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from signaling.store.migrations import MIGRATIONS, Step
from signaling.store.models import (
    DEFAULT_CAPACITY,
    ROOM_FIELDS,
    Account,
    Conflict,
    Endpoint,
    Invitation,
    InvitationUnusable,
    Meeting,
    NotFound,
    Organisation,
    Role,
    Room,
    RoomKind,
)
from signaling.store.sqlite_archive import SqliteArchive
from signaling.store.sqlite_journal import SqliteJournal
from signaling.store.sqlite_meeting import SqliteMeetingExtras
from signaling.store.sqlite_ops import SqliteOps

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
"""How long to wait for another process's write lock (the CLI) before failing."""


def _organisation(row: sqlite3.Row) -> Organisation:
    return Organisation(row["id"], row["name"], row["created_at"])


def _account(row: sqlite3.Row) -> Account:
    return Account(row["id"], row["username"], row["display_name"], row["role"], row["org_id"],
                   row["password_hash"], bool(row["disabled"]), row["created_at"],
                   row["tokens_void_before"])


def _room(row: sqlite3.Row) -> Room:
    return Room(row["id"], row["name"], row["org_id"], row["capacity"], row["kind"],
                bool(row["locked"]), bool(row["lobby"]), bool(row["auto_record"]),
                row["password_hash"], row["created_at"], row["instance"],
                row["tokens_void_before"], bool(row["guest_password_join"]))


def _invitation(row: sqlite3.Row) -> Invitation:
    return Invitation(row["id"], row["room_id"], row["token_hash"], row["label"],
                      row["max_uses"], row["uses_left"], row["expires_at"], bool(row["revoked"]),
                      row["created_by"], row["created_at"])


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(row["id"], row["name"], row["org_id"], row["secret_hash"], row["created_at"],
                    row["last_seen_at"])


class SqliteStore(SqliteArchive, SqliteJournal, SqliteOps, SqliteMeetingExtras):
    networked = False
    """True for a store that several hosts share (``PgStore``): they share its signing secret."""
    _for_update = ""
    """Appended to a SELECT whose row the transaction then changes: PostgreSQL locks the row
    (``PgStore``); SQLite's ``BEGIN IMMEDIATE`` already holds the only write lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating if need be) and migrate the database at ``path``."""
        store = cls(path)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._disconnect)
        self._executor.shutdown(wait=True)

    # -- plumbing (runs on the store thread) ---------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # A cancelled caller does not cancel the transaction: it completes or rolls back whole.
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Hashes and addresses live here: owner only. SQLite gives its -wal and -shm files the
        # database file's mode, so creating (or tightening) this one covers all three.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (the module's implicit
        # transactions would start with a DEFERRED BEGIN and could fail to upgrade).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # PostgreSQL's two-argument greatest(), so the store's SQL is the same in both dialects
        # (SQLite spells it max(a, b), which PostgreSQL does not have).
        conn.create_function("greatest", 2, max, deterministic=True)
        self._conn = conn
        self._migrate()

    def _disconnect(self) -> None:
        assert self._conn is not None
        self._conn.close()
        self._conn = None

    def _migrate(self) -> None:
        conn = self._db
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for number, statements in enumerate(MIGRATIONS, start=1):
            def step(c: sqlite3.Connection, number: int = number,
                     statements: list[Step] = statements) -> None:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if self._version(c) >= number:
                    return
                for statement in statements:
                    if isinstance(statement, str):
                        c.execute(statement)
                    else:
                        statement(c)
                c.execute("DELETE FROM schema_version")
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            self._tx(step)

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is closed")
        return self._conn

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise Conflict(_explain(exc)) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._tx, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Reads of several statements also run in one transaction: one consistent snapshot.
        def snapshot() -> T:
            conn = self._db
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        return await self._run(snapshot)

    async def _one(self, sql: str, args: tuple[object, ...]) -> sqlite3.Row | None:
        return await self._read(lambda c: c.execute(sql, args).fetchone())

    async def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        return await self._read(lambda c: c.execute(sql, args).fetchall())

    # -- general -------------------------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._read(self._version)

    async def is_empty(self) -> bool:
        return await self._one("SELECT 1 FROM accounts LIMIT 1", ()) is None

    # -- organisations ---------------------------------------------------------------------------

    async def create_organisation(self, name: str) -> Organisation:
        def insert(c: sqlite3.Connection) -> Organisation:
            row = c.execute("INSERT INTO organisations (name, created_at) VALUES (?, ?) "
                            "RETURNING *", (name, time.time())).fetchone()
            return _organisation(row)
        return await self._write(insert)

    async def get_organisation(self, org_id: int) -> Organisation:
        row = await self._one("SELECT * FROM organisations WHERE id = ?", (org_id,))
        if row is None:
            raise NotFound("organisation", org_id)
        return _organisation(row)

    async def list_organisations(self) -> list[Organisation]:
        return [_organisation(r) for r in await self._all("SELECT * FROM organisations "
                                                          "ORDER BY id")]

    # -- accounts ------------------------------------------------------------------------------

    async def create_account(self, username: str, display_name: str, role: Role,
                             org_id: int | None, password_hash: str) -> Account:
        def insert(c: sqlite3.Connection) -> Account:
            row = c.execute(
                "INSERT INTO accounts (username, display_name, role, org_id, password_hash, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (username, display_name, role, org_id, password_hash, time.time()),
            ).fetchone()
            return _account(row)
        return await self._write(insert)

    async def get_account(self, account_id: int) -> Account:
        row = await self._one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise NotFound("account", account_id)
        return _account(row)

    async def find_account(self, username: str) -> Account | None:
        row = await self._one("SELECT * FROM accounts WHERE username = ?", (username,))
        return None if row is None else _account(row)

    async def list_accounts(self, org_id: int | None = None) -> list[Account]:
        if org_id is None:
            rows = await self._all("SELECT * FROM accounts ORDER BY id")
        else:
            rows = await self._all("SELECT * FROM accounts WHERE org_id = ? ORDER BY id",
                                   (org_id,))
        return [_account(r) for r in rows]

    async def set_account_password(self, account_id: int, password_hash: str) -> None:
        def update(c: sqlite3.Connection) -> None:
            if c.execute("UPDATE accounts SET password_hash = ? WHERE id = ?",
                         (password_hash, account_id)).rowcount == 0:
                raise NotFound("account", account_id)
            # A new password ends every API session of the old one.
            c.execute("DELETE FROM api_sessions WHERE account_id = ?", (account_id,))
        await self._write(update)

    async def void_account_tokens(self, account_id: int, before: float) -> float:
        """Join tokens of this account issued before ``before`` are void (never un-voids:
        an earlier time than the stored one changes nothing). Returns the stored time."""
        return await self._void("accounts", account_id, "account", before)

    async def _void(self, table: str, key: int, entity: str, before: float) -> float:
        def update(c: sqlite3.Connection) -> float:
            # The table name comes from our two callers only, never from the caller's text.
            row = c.execute(f"UPDATE {table} SET tokens_void_before = "
                            "greatest(tokens_void_before, ?) WHERE id = ? "
                            "RETURNING tokens_void_before", (before, key)).fetchone()
            if row is None:
                raise NotFound(entity, key)
            return float(row[0])
        return await self._write(update)

    async def delete_account(self, account_id: int) -> None:
        await self._delete("DELETE FROM accounts WHERE id = ?", (account_id,),
                           "account", account_id)

    async def _delete(self, sql: str, args: tuple[object, ...], entity: str,
                      key: object) -> None:
        def delete(c: sqlite3.Connection) -> None:
            if c.execute(sql, args).rowcount == 0:
                raise NotFound(entity, key)
        await self._write(delete)

    # -- rooms and memberships -------------------------------------------------------------------

    async def create_room(self, name: str, org_id: int, *, capacity: int = DEFAULT_CAPACITY,
                          kind: RoomKind = "multipoint", password_hash: str | None = None,
                          locked: bool = False, lobby: bool = False,
                          auto_record: bool = False,
                          guest_password_join: bool = False) -> Room:
        def insert(c: sqlite3.Connection) -> Room:
            row = c.execute(
                "INSERT INTO rooms (name, org_id, capacity, kind, locked, lobby, auto_record, "
                "password_hash, created_at, instance, guest_password_join) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (name, org_id, capacity, kind, locked, lobby, auto_record, password_hash,
                 time.time(), secrets.token_hex(16), guest_password_join),
            ).fetchone()
            return _room(row)
        return await self._write(insert)

    async def get_room(self, name: str) -> Room:
        room = await self.find_room(name)
        if room is None:
            raise NotFound("room", name)
        return room

    async def find_room(self, name: str) -> Room | None:
        row = await self._one("SELECT * FROM rooms WHERE name = ?", (name,))
        return None if row is None else _room(row)

    async def list_rooms(self, org_id: int | None = None,
                         member_id: int | None = None) -> list[Room]:
        sql, args = "SELECT * FROM rooms WHERE TRUE", []
        if org_id is not None:
            sql += " AND org_id = ?"
            args.append(org_id)
        if member_id is not None:
            sql += " AND id IN (SELECT room_id FROM memberships WHERE account_id = ?)"
            args.append(member_id)
        return [_room(r) for r in await self._all(sql + " ORDER BY name", tuple(args))]

    async def update_room(self, name: str, /, **changes: object) -> Room:
        unknown = set(changes) - ROOM_FIELDS
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} of a room")

        def update(c: sqlite3.Connection) -> Room:
            if changes:
                # Column names come from ROOM_FIELDS only, never from the caller's text.
                assignments = ", ".join(f"{column} = ?" for column in changes)
                c.execute(f"UPDATE rooms SET {assignments} WHERE name = ?",
                          (*changes.values(), name))
            row = c.execute("SELECT * FROM rooms WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound("room", name)
            return _room(row)
        return await self._write(update)

    async def delete_room(self, name: str) -> None:
        await self._delete("DELETE FROM rooms WHERE name = ?", (name,), "room", name)

    async def void_room_tokens(self, room_id: int, before: float) -> float:
        """Join tokens for this room issued before ``before`` are void (see
        ``void_account_tokens``)."""
        return await self._void("rooms", room_id, "room", before)

    async def add_removal(self, room_id: int, identity: str, until: float) -> None:
        """A host removed ``identity``: it stays out of the room until ``until``."""
        def insert(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM removals WHERE until <= ?", (time.time(),))  # sweep
            c.execute("INSERT INTO removals VALUES (?, ?, ?) ON CONFLICT (room_id, identity) "
                      "DO UPDATE SET until = greatest(removals.until, excluded.until)",
                      (room_id, identity, until))
        await self._write(insert)

    async def is_removed(self, room_id: int, identity: str, now: float) -> bool:
        return await self._one("SELECT 1 FROM removals WHERE room_id = ? AND identity = ? "
                               "AND until > ?", (room_id, identity, now)) is not None

    async def add_member(self, room_id: int, account_id: int) -> None:
        def insert(c: sqlite3.Connection) -> None:
            _require(c, "rooms", room_id, "room")
            _require(c, "accounts", account_id, "account")
            c.execute("INSERT INTO memberships (room_id, account_id) VALUES (?, ?)",
                      (room_id, account_id))
        await self._write(insert)

    async def remove_member(self, room_id: int, account_id: int) -> None:
        await self._delete("DELETE FROM memberships WHERE room_id = ? AND account_id = ?",
                           (room_id, account_id), "membership", account_id)

    async def list_members(self, room_id: int) -> list[Account]:
        rows = await self._all(
            "SELECT a.* FROM accounts a JOIN memberships m ON m.account_id = a.id "
            "WHERE m.room_id = ? ORDER BY a.id", (room_id,))
        return [_account(r) for r in rows]

    async def is_member(self, room_id: int, account_id: int) -> bool:
        return await self._one("SELECT 1 FROM memberships WHERE room_id = ? AND account_id = ?",
                               (room_id, account_id)) is not None

    # -- invitations -----------------------------------------------------------------------------

    async def create_invitation(self, room_id: int, token_hash: str, *, max_uses: int,
                                expires_at: float, label: str = "",
                                created_by: int | None = None) -> Invitation:
        def insert(c: sqlite3.Connection) -> Invitation:
            _require(c, "rooms", room_id, "room")
            row = c.execute(
                "INSERT INTO invitations (room_id, token_hash, label, max_uses, uses_left, "
                "expires_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING *",
                (room_id, token_hash, label, max_uses, max_uses, expires_at, created_by,
                 time.time()),
            ).fetchone()
            return _invitation(row)
        return await self._write(insert)

    async def list_invitations(self, room_id: int) -> list[Invitation]:
        rows = await self._all("SELECT * FROM invitations WHERE room_id = ? ORDER BY id",
                               (room_id,))
        return [_invitation(r) for r in rows]

    async def get_invitation(self, invitation_id: int) -> Invitation:
        row = await self._one("SELECT * FROM invitations WHERE id = ?", (invitation_id,))
        if row is None:
            raise NotFound("invitation", invitation_id)
        return _invitation(row)

    async def revoke_invitation(self, room_id: int, invitation_id: int) -> None:
        def revoke(c: sqlite3.Connection) -> None:
            if c.execute("UPDATE invitations SET revoked = 1 WHERE id = ? AND room_id = ?",
                         (invitation_id, room_id)).rowcount == 0:
                raise NotFound("invitation", invitation_id)
        await self._write(revoke)

    async def consume_invitation(self, token_hash: str, room_id: int,
                                 now: float) -> Invitation:
        """Use one admission of an invitation; raise ``InvitationUnusable`` saying why not.

        Read, check and decrement happen under one write lock: 20 tasks racing for the last
        use of a link get it exactly once.
        """
        def consume(c: sqlite3.Connection) -> Invitation:
            # PostgreSQL: lock the row (several nodes); SQLite's BEGIN IMMEDIATE already has.
            row = c.execute("SELECT * FROM invitations WHERE token_hash = ?" + self._for_update,
                            (token_hash,)).fetchone()
            if row is None:
                raise InvitationUnusable("unknown")
            invitation = _invitation(row)
            if invitation.room_id != room_id:
                raise InvitationUnusable("wrong-room", invitation)
            if invitation.revoked:
                raise InvitationUnusable("revoked", invitation)
            if invitation.expires_at <= now:
                raise InvitationUnusable("expired", invitation)
            if invitation.uses_left <= 0:
                raise InvitationUnusable("used-up", invitation)
            row = c.execute("UPDATE invitations SET uses_left = uses_left - 1 WHERE id = ? "
                            "RETURNING *", (invitation.id,)).fetchone()
            return _invitation(row)
        return await self._write(consume)

    # -- scheduled meetings ----------------------------------------------------------------------

    async def create_meeting(self, room_id: int, title: str, first_date: str, start: str,
                             end: str, *, weekly: bool = True, until: str | None = None,
                             utc_offset_min: int = 420, account_ids: tuple[int, ...] = (),
                             endpoint_ids: tuple[int, ...] = ()) -> Meeting:
        def insert(c: sqlite3.Connection) -> Meeting:
            _require(c, "rooms", room_id, "room")
            meeting_id = c.execute(
                'INSERT INTO meetings (room_id, title, first_date, start, "end", weekly, until, '
                "utc_offset_min) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (room_id, title, first_date, start, end, weekly, until, utc_offset_min),
            ).fetchone()[0]
            for account_id in dict.fromkeys(account_ids):
                _require(c, "accounts", account_id, "account")
                c.execute("INSERT INTO meeting_accounts VALUES (?, ?)", (meeting_id, account_id))
            for endpoint_id in dict.fromkeys(endpoint_ids):
                _require(c, "endpoints", endpoint_id, "endpoint")
                c.execute("INSERT INTO meeting_endpoints VALUES (?, ?)",
                          (meeting_id, endpoint_id))
            return _meetings(c, "WHERE id = ?", (meeting_id,))[0]
        return await self._write(insert)

    async def list_meetings(self, room_id: int | None = None,
                            endpoint_id: int | None = None) -> list[Meeting]:
        where, args = "WHERE TRUE", []
        if room_id is not None:
            where += " AND room_id = ?"
            args.append(room_id)
        if endpoint_id is not None:
            where += " AND id IN (SELECT meeting_id FROM meeting_endpoints WHERE endpoint_id = ?)"
            args.append(endpoint_id)
        return await self._read(lambda c: _meetings(c, where, tuple(args)))

    async def delete_meeting(self, room_id: int, meeting_id: int) -> None:
        await self._delete("DELETE FROM meetings WHERE id = ? AND room_id = ?",
                           (meeting_id, room_id), "meeting", meeting_id)

    # -- endpoint devices ------------------------------------------------------------------------

    async def create_endpoint(self, name: str, org_id: int, secret_hash: str) -> Endpoint:
        def insert(c: sqlite3.Connection) -> Endpoint:
            _require(c, "organisations", org_id, "organisation")
            row = c.execute("INSERT INTO endpoints (name, org_id, secret_hash, created_at) "
                            "VALUES (?, ?, ?, ?) RETURNING *",
                            (name, org_id, secret_hash, time.time())).fetchone()
            return _endpoint(row)
        return await self._write(insert)

    async def get_endpoint(self, endpoint_id: int) -> Endpoint:
        row = await self._one("SELECT * FROM endpoints WHERE id = ?", (endpoint_id,))
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return _endpoint(row)

    async def list_endpoints(self, org_id: int | None = None) -> list[Endpoint]:
        if org_id is None:
            rows = await self._all("SELECT * FROM endpoints ORDER BY id")
        else:
            rows = await self._all("SELECT * FROM endpoints WHERE org_id = ? ORDER BY id",
                                   (org_id,))
        return [_endpoint(r) for r in rows]

    async def touch_endpoint(self, endpoint_id: int, now: float) -> None:
        await self._write(lambda c: c.execute(
            "UPDATE endpoints SET last_seen_at = ? WHERE id = ?", (now, endpoint_id)))

    async def delete_endpoint(self, endpoint_id: int) -> None:
        await self._delete("DELETE FROM endpoints WHERE id = ?", (endpoint_id,),
                           "endpoint", endpoint_id)

    # -- REST API sessions -----------------------------------------------------------------------

    async def create_api_session(self, token_hash: str, account_id: int,
                                 expires_at: float) -> None:
        def insert(c: sqlite3.Connection) -> None:
            # Old sessions are swept here so the table stays small without a timer.
            c.execute("DELETE FROM api_sessions WHERE expires_at <= ?", (time.time(),))
            c.execute("INSERT INTO api_sessions VALUES (?, ?, ?)",
                      (token_hash, account_id, expires_at))
        await self._write(insert)

    async def api_session_account(self, token_hash: str, now: float) -> Account | None:
        row = await self._one(
            "SELECT a.* FROM api_sessions s JOIN accounts a ON a.id = s.account_id "
            "WHERE s.token_hash = ? AND s.expires_at > ? AND a.disabled = 0", (token_hash, now))
        return None if row is None else _account(row)

    async def delete_api_session(self, token_hash: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM api_sessions WHERE token_hash = ?",
                                              (token_hash,)))


def find_room_instance(path: Path, name: str) -> str | None:
    """For the command line, which signs tokens without a running server: the instance of room
    ``name`` in the database at ``path`` (read only), or None if there is no such room yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        row = conn.execute("SELECT instance FROM rooms WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # not migrated yet: the server adds instances on start
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _require(c: sqlite3.Connection, table: str, key: int, entity: str) -> None:
    """Say which reference is missing (SQLite's foreign-key error does not)."""
    if c.execute(f"SELECT 1 FROM {table} WHERE id = ?", (key,)).fetchone() is None:
        raise NotFound(entity, key)


def _meetings(c: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Meeting]:
    meetings = []
    for row in c.execute(f"SELECT * FROM meetings {where} ORDER BY id", args).fetchall():
        accounts = tuple(r[0] for r in c.execute(
            "SELECT account_id FROM meeting_accounts WHERE meeting_id = ? ORDER BY account_id",
            (row["id"],)))
        endpoints = tuple(r[0] for r in c.execute(
            "SELECT endpoint_id FROM meeting_endpoints WHERE meeting_id = ? "
            "ORDER BY endpoint_id", (row["id"],)))
        meetings.append(Meeting(row["id"], row["room_id"], row["title"], row["first_date"],
                                row["start"], row["end"], bool(row["weekly"]), row["until"],
                                row["utc_offset_min"], accounts, endpoints))
    return meetings


def _explain(exc: sqlite3.IntegrityError) -> str:
    text = str(exc)
    if text.startswith("UNIQUE constraint failed: "):
        columns = text.removeprefix("UNIQUE constraint failed: ")
        return f"already exists ({columns})"
    if "FOREIGN KEY" in text:
        return "still in use by other records"
    return text
