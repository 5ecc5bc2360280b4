"""The event record and the audit trail of ``SqliteStore`` (a mixin over its plumbing, like
``sqlite_archive.py``). Both are written in batches: one transaction per batch, so a burst of
events costs one fsync, not one each.

The audit chain is extended inside the write transaction (``BEGIN IMMEDIATE`` holds the write
lock from reading the head to the last insert), so two writers (the server and the CLI) can
never fork it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from signaling.store.journal_models import (
    GENESIS,
    AuditEntry,
    AuditRow,
    Detail,
    MeetingEvent,
    audit_hash,
    canonical_detail,
)

T = TypeVar("T")


class SqliteJournal:
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    def _serialise(self, c: sqlite3.Connection, what: str) -> None:
        """Make this write transaction the only one touching ``what`` until it ends. SQLite:
        nothing to do (``BEGIN IMMEDIATE`` holds the database's one write lock); PostgreSQL
        takes a transaction-scoped advisory lock (``PgStore``)."""

    # -- the event record ------------------------------------------------------------------------

    async def append_events(self, events: Sequence[MeetingEvent]) -> None:
        rows = [(e.at, e.kind, e.room, e.participant, e.identity, canonical_detail(e.detail))
                for e in events]
        await self._write(lambda c: c.executemany(
            "INSERT INTO events (at, kind, room, participant, identity, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)", rows))

    async def list_events(self, since: float, until: float,
                          room: str | None = None) -> list[MeetingEvent]:
        """Events with ``since <= at < until``, oldest first (insertion order breaks ties)."""
        sql = "SELECT * FROM events WHERE at >= ? AND at < ?"
        args: tuple[object, ...] = (since, until)
        if room is not None:
            sql, args = sql + " AND room = ?", (*args, room)
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY at, id", args).fetchall())
        return [MeetingEvent(at=r["at"], kind=r["kind"], room=r["room"],
                             participant=r["participant"], identity=r["identity"],
                             detail=msgspec.json.decode(r["detail"], type=Detail))
                for r in rows]

    async def prune_events(self, before: float) -> int:
        return await self._write(
            lambda c: c.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount)

    async def refusal_counts(self, since: float, until: float) -> list[tuple[str, str, int]]:
        """(room, code, attempts) of refused joins in ``[since, until)`` from the join audit,
        whose merged repeats carry their count (admitted and recording rows left out)."""
        rows = await self._read(lambda c: c.execute(
            "SELECT room, outcome, sum(count) FROM joins WHERE at >= ? AND at < ? AND outcome "
            "NOT IN ('admitted', 'lobby', 'recording-started', 'recording-stopped') "
            "GROUP BY room, outcome ORDER BY room, outcome", (since, until)).fetchall())
        return [(r[0], r[1], int(r[2])) for r in rows]

    # -- the audit trail -------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> str:
        """Chain ``entries`` on; returns the new head hash."""
        def append(c: sqlite3.Connection) -> str:
            # Several nodes append: reading the head and inserting after it must not interleave
            # (the chain would fork; the seq key would refuse the second anyway).
            self._serialise(c, "audit")
            seq, head = _head(c)
            for entry in entries:
                seq += 1
                detail = canonical_detail(entry.detail)
                digest = audit_hash(seq, entry, detail, head)
                c.execute("INSERT INTO audit (seq, at, actor, action, room, target, address, "
                          "outcome, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (seq, entry.at, entry.actor, entry.action, entry.room, entry.target,
                           entry.address, entry.outcome, detail, head, digest))
                head = digest
            return head
        return await self._write(append)

    async def list_audit(self, since: float | None = None, until: float | None = None,
                         room: str | None = None, actor: str | None = None,
                         limit: int = 1000) -> list[AuditRow]:
        """Newest first."""
        where, args = ["TRUE"], []
        for clause, value in (("at >= ?", since), ("at < ?", until), ("room = ?", room),
                              ("actor = ?", actor)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [_audit_row(r) for r in rows]

    async def audit_chain(self) -> tuple[tuple[int, str] | None, list[AuditRow]]:
        """The anchor (last pruned row) and every row, oldest first: what ``verify_chain``
        walks. One snapshot, so a concurrent append cannot tear it."""
        def read(c: sqlite3.Connection) -> tuple[tuple[int, str] | None, list[AuditRow]]:
            anchor = c.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            rows = c.execute("SELECT * FROM audit ORDER BY seq").fetchall()
            return (None if anchor is None else (int(anchor[0]), str(anchor[1])),
                    [_audit_row(r) for r in rows])
        return await self._read(read)

    async def audit_page(self, after_seq: int, limit: int) -> tuple[tuple[int, str] | None,
                                                                     list[AuditRow]]:
        """The anchor and up to ``limit`` rows after ``after_seq``, oldest first: a long
        chain is verified a page at a time, so other writes are not held up meanwhile."""
        def read(c: sqlite3.Connection) -> tuple[tuple[int, str] | None, list[AuditRow]]:
            anchor = c.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            rows = c.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                             (after_seq, limit)).fetchall()
            return (None if anchor is None else (int(anchor[0]), str(anchor[1])),
                    [_audit_row(r) for r in rows])
        return await self._read(read)

    async def prune_audit(self, before: float, keep_max: int) -> int:
        """The retention policy: drop the oldest rows, those before ``before`` and all but the
        newest ``keep_max``, always a run from the start (the chain stays one piece) and
        remember the last dropped row as the anchor. Returns how many were dropped."""
        def prune(c: sqlite3.Connection) -> int:
            self._serialise(c, "audit")
            cut = c.execute("SELECT max(seq) FROM audit WHERE at < ?", (before,)).fetchone()[0]
            by_count = c.execute("SELECT seq FROM audit ORDER BY seq DESC LIMIT 1 OFFSET ?",
                                 (keep_max,)).fetchone()
            last = max(cut or 0, by_count[0] if by_count else 0)
            if not last:
                return 0
            row = c.execute("SELECT seq, hash FROM audit WHERE seq = ?", (last,)).fetchone()
            c.execute("INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) "
                      "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                      (row[0], row[1]))
            return int(c.execute("DELETE FROM audit WHERE seq <= ?", (last,)).rowcount)
        return await self._write(prune)


def _head(c: sqlite3.Connection) -> tuple[int, str]:
    row = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        row = c.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def _audit_row(r: sqlite3.Row) -> AuditRow:
    return AuditRow(seq=r["seq"], at=r["at"], actor=r["actor"], action=r["action"],
                    room=r["room"], target=r["target"], address=r["address"],
                    outcome=r["outcome"], detail=r["detail"], prev=r["prev"], hash=r["hash"])
