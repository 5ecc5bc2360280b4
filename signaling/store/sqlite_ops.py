"""Operations tables of ``SqliteStore`` (issue 13): the durable webhook queue and the support
notices sent; the secret nodes sharing a store sign with (issue 14); and the online backup of a
store (``diemcau backup``).

A mixin over the store's plumbing (``_write``/``_all``/``_run``, on the store thread), like
``sqlite_archive.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class WebhookRow(msgspec.Struct, frozen=True):
    id: int
    url: str
    event: str
    body: str
    created_at: float
    attempts: int
    next_at: float
    last_error: str | None = None
    delivered_at: float | None = None


class SupportNotice(msgspec.Struct, frozen=True):
    meeting_id: int
    starts_at: float
    room: str
    title: str
    sent_at: float


def _webhook(row: sqlite3.Row) -> WebhookRow:
    return WebhookRow(row["id"], row["url"], row["event"], row["body"], row["created_at"],
                      row["attempts"], row["next_at"], row["last_error"], row["delivered_at"])


def backup_database(source: sqlite3.Connection, dest: Path) -> int:
    """SQLite's online backup API: a consistent copy while others write (it restarts its copy
    when the source changes under it). Written beside ``dest`` and renamed, so ``dest`` is
    either absent or whole. Returns the number of pages copied."""
    temporary = dest.with_name(dest.name + ".partial")
    temporary.unlink(missing_ok=True)
    target = sqlite3.connect(temporary)
    try:
        # In steps of 4 MiB (4 KiB pages), 10 ms apart: a writer waits for a step, never for
        # the whole copy; a write between steps makes SQLite restart the copy (consistent).
        source.backup(target, pages=1024, sleep=0.01)
        pages = int(target.execute("PRAGMA page_count").fetchone()[0])
        check = target.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise RuntimeError(f"backup failed its integrity check: {check}")
    finally:
        target.close()
    temporary.chmod(0o600)  # password hashes are in it
    temporary.replace(dest)
    return pages


class SqliteOps:
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    @property
    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    _skip_locked = ""
    """PostgreSQL: `` FOR UPDATE SKIP LOCKED`` (``PgStore``); SQLite's write lock is whole."""

    # -- webhooks --------------------------------------------------------------------------------

    async def enqueue_webhooks(self, rows: Sequence[tuple[str, str, str, float]]) -> None:
        """(url, event, body, created_at) rows, due at once; one transaction for a batch."""
        await self._write(lambda c: c.executemany(
            "INSERT INTO webhook_queue (url, event, body, created_at, next_at) "
            "VALUES (?, ?, ?, ?, ?)", [(*row, row[3]) for row in rows]))

    async def due_webhooks(self, now: float, limit: int = 50) -> list[WebhookRow]:
        rows = await self._all("SELECT * FROM webhook_queue WHERE delivered_at IS NULL AND "
                               "next_at <= ? ORDER BY next_at, id LIMIT ?", (now, limit))
        return [_webhook(row) for row in rows]

    async def claim_webhooks(self, now: float, lease_s: float,
                             limit: int = 50) -> list[WebhookRow]:
        """The due rows, claimed for ``lease_s``: their ``next_at`` moves on, so another node
        (or process) sharing the queue does not deliver them too; a node that dies with a claim
        leaves them due again after the lease (at least once, never twice at once).
        PostgreSQL: FOR UPDATE SKIP LOCKED lets the nodes claim different rows at once."""
        def claim(c: sqlite3.Connection) -> list[WebhookRow]:
            rows = c.execute("SELECT * FROM webhook_queue WHERE delivered_at IS NULL AND "
                             "next_at <= ? ORDER BY next_at, id LIMIT ?" + self._skip_locked,
                             (now, limit)).fetchall()
            c.executemany("UPDATE webhook_queue SET next_at = ? WHERE id = ?",
                          [(now + lease_s, row["id"]) for row in rows])
            return [_webhook(row) for row in rows]
        return await self._write(claim)

    async def next_webhook_at(self) -> float | None:
        rows = await self._all("SELECT min(next_at) FROM webhook_queue "
                               "WHERE delivered_at IS NULL")
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def webhook_delivered(self, webhook_id: int, at: float) -> None:
        await self._write(lambda c: c.execute(
            "UPDATE webhook_queue SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
            (at, webhook_id)))

    async def webhook_failed(self, webhook_id: int, error: str, next_at: float) -> None:
        await self._write(lambda c: c.execute(
            "UPDATE webhook_queue SET attempts = attempts + 1, last_error = ?, next_at = ? "
            "WHERE id = ?", (error[:300], next_at, webhook_id)))

    async def list_webhooks(self, limit: int = 100) -> list[WebhookRow]:
        rows = await self._all("SELECT * FROM webhook_queue ORDER BY id DESC LIMIT ?", (limit,))
        return [_webhook(row) for row in rows]

    async def prune_webhooks(self, delivered_before: float,
                             undelivered_before: float) -> tuple[int, int]:
        """Forget deliveries done before ``delivered_before``, and give up on events queued
        before ``undelivered_before`` that never got through. Returns (done, given up)."""
        def prune(c: sqlite3.Connection) -> tuple[int, int]:
            done = c.execute("DELETE FROM webhook_queue WHERE delivered_at IS NOT NULL AND "
                             "delivered_at < ?", (delivered_before,)).rowcount
            given_up = c.execute("DELETE FROM webhook_queue WHERE delivered_at IS NULL AND "
                                 "created_at < ?", (undelivered_before,)).rowcount
            return done, given_up
        return await self._write(prune)

    # -- secrets shared by the nodes (issue 14) ---------------------------------------------------

    async def signing_secret(self, candidate: bytes) -> bytes:
        """The secret every node sharing this store signs tokens with: ``candidate`` if none
        was stored yet (the first node to ask wins; the unique key settles a race)."""
        def get(c: sqlite3.Connection) -> bytes:
            c.execute("INSERT INTO store_secrets (name, value) VALUES ('join-tokens', ?) "
                      "ON CONFLICT DO NOTHING", (candidate.hex(),))
            row = c.execute("SELECT value FROM store_secrets WHERE name = 'join-tokens'"
                            ).fetchone()
            return bytes.fromhex(row[0])
        return await self._write(get)

    # -- support notices -------------------------------------------------------------------------

    async def add_support_notice(self, notice: SupportNotice) -> bool:
        """False if this occurrence was already notified (another start, another process)."""
        return await self._write(lambda c: c.execute(
            "INSERT INTO support_notices (meeting_id, starts_at, room, title, sent_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (notice.meeting_id, notice.starts_at, notice.room, notice.title,
             notice.sent_at)).rowcount == 1)

    async def list_support_notices(self, since: float, limit: int = 100) -> list[SupportNotice]:
        rows = await self._all("SELECT * FROM support_notices WHERE starts_at >= ? "
                               "ORDER BY starts_at LIMIT ?", (since, limit))
        return [SupportNotice(r["meeting_id"], r["starts_at"], r["room"], r["title"],
                              r["sent_at"]) for r in rows]
