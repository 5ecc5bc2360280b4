"""The audit and archive tables of ``SqliteStore``: join records and the recordings catalogue.

A mixin over the store's plumbing (``_write``/``_one``/``_all``, which run on the store thread),
kept apart so each file stays readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import msgspec

from signaling.store.models import JoinRecord, NotFound, RecordingFile, RecordingRow

T = TypeVar("T")


class SqliteArchive:
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _one(self, sql: str, args: tuple[object, ...]) -> sqlite3.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    # -- audit -----------------------------------------------------------------------------------

    async def record_join(self, record: JoinRecord) -> int:
        """Append one record; returns its id (for ``merge_join``)."""
        return await self._write(lambda c: c.execute(
            "INSERT INTO joins (at, room, identity, role, address, outcome, count, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (record.at, record.room, record.identity, record.role, record.address,
             record.outcome, record.count, record.last_at)).fetchone()[0])

    async def merge_join(self, record_id: int, count: int, last_at: float) -> None:
        """``count`` more repeats of record ``record_id``, the last at ``last_at``."""
        await self._write(lambda c: c.execute(
            "UPDATE joins SET count = count + ?, last_at = ? WHERE id = ?",
            (count, last_at, record_id)))

    async def prune_joins(self, before: float, keep_max: int) -> int:
        """The retention policy: drop records older than ``before`` and all but the newest
        ``keep_max``. Returns how many were dropped."""
        def prune(c: sqlite3.Connection) -> int:
            dropped = c.execute("DELETE FROM joins WHERE at < ?", (before,)).rowcount
            dropped += c.execute("DELETE FROM joins WHERE id <= (SELECT id FROM joins "
                                 "ORDER BY id DESC LIMIT 1 OFFSET ?)", (keep_max,)).rowcount
            return dropped
        return await self._write(prune)

    async def list_joins(self, room: str | None = None, limit: int = 100) -> list[JoinRecord]:
        if room is None:
            rows = await self._all("SELECT * FROM joins ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self._all("SELECT * FROM joins WHERE room = ? ORDER BY id DESC "
                                   "LIMIT ?", (room, limit))
        return [JoinRecord(r["at"], r["room"], r["identity"], r["role"], r["address"],
                           r["outcome"], r["count"], r["last_at"]) for r in rows]

    # -- the archive's catalogue -----------------------------------------------------------------

    async def add_recording(self, row: RecordingRow) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO recordings (id, room, org_id, meeting_id, started_at, ended_at, state, "
            "started_by, stopped_by, participants, files, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.room, row.org_id, row.meeting_id, row.started_at, row.ended_at,
             row.state, row.started_by, row.stopped_by, _json(row.participants),
             _json(row.files), row.error)))

    async def finish_recording(self, recording_id: str, *, ended_at: float, state: str,
                               stopped_by: str | None, participants: tuple[str, ...],
                               files: tuple[RecordingFile, ...],
                               error: str | None = None) -> None:
        def finish(c: sqlite3.Connection) -> None:
            changed = c.execute(
                "UPDATE recordings SET ended_at = ?, state = ?, stopped_by = ?, "
                "participants = ?, files = ?, error = coalesce(?, error) WHERE id = ?",
                (ended_at, state, stopped_by, _json(participants), _json(files), error,
                 recording_id)).rowcount
            if not changed:
                raise NotFound("recording", recording_id)
        await self._write(finish)

    async def get_recording(self, recording_id: str) -> RecordingRow:
        row = await self._one("SELECT * FROM recordings WHERE id = ?", (recording_id,))
        if row is None:
            raise NotFound("recording", recording_id)
        return _recording(row)

    async def list_recordings(self, room: str | None = None, org_id: int | None = None,
                              since: float | None = None, until: float | None = None,
                              limit: int = 1000) -> list[RecordingRow]:
        where: list[str] = ["state != 'deleted'"]
        args: list[object] = []
        for clause, value in (("room = ?", room), ("org_id = ?", org_id),
                              ("started_at >= ?", since), ("started_at < ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = await self._all(f"SELECT * FROM recordings WHERE {' AND '.join(where)} "
                               "ORDER BY started_at DESC LIMIT ?", (*args, limit))
        return [_recording(r) for r in rows]


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _recording(row: sqlite3.Row) -> RecordingRow:
    return RecordingRow(
        row["id"], row["room"], row["org_id"], row["meeting_id"], row["started_at"],
        row["ended_at"], row["state"], row["started_by"], row["stopped_by"],
        tuple(msgspec.json.decode(row["participants"], type=list[str])),
        tuple(msgspec.json.decode(row["files"], type=list[RecordingFile])), row["error"])
