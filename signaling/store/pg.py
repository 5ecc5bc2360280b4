"""``PgStore``: the store in PostgreSQL (``--store postgresql://...``, issue 14), shared by every
node of a cluster, so ``account:<id>`` is the same person on every node.

The SQL methods are ``SqliteStore``'s, written once in the subset both engines speak; this class
swaps the plumbing (``signaling/store/pg_dialect.py`` translates as the statements run):

- Threads, each with its own psycopg connection (opened on first use and again after a
  failure), so the event loop never blocks: one thread for this node's writes, which commit in
  the order they were called, as in SQLite (join records, chat lines: ids in call order), and a
  small pool for reads, a few at once.
- Writes are READ COMMITTED transactions. What was safe because one process owned the SQLite file
  (its BEGIN IMMEDIATE serialised every writer) is made safe per case with several writers:
  * an invitation's uses: its row is read ``FOR UPDATE`` (``_for_update``), so the check and the
    decrement of one consumer finish before the next consumer reads;
  * the audit trail's hash chain (append and prune): a transaction-scoped advisory lock
    (``_serialise``) from reading the head to the last insert; ``seq`` stays the primary key,
    so a fork would be refused even without it;
  * the webhook queue: ``claim_webhooks`` takes due rows ``FOR UPDATE SKIP LOCKED`` and moves
    their ``next_at`` past the claim's lease, so two nodes never deliver one row at once;
  * support notices "once": the primary key (meeting, start) with ``ON CONFLICT DO NOTHING``;
  * counters and flags (``uses_left``, join repeats, ``tokens_void_before`` with greatest()):
    single UPDATE statements, atomic on their row;
  * names (accounts, rooms, endpoints, invitations' tokens): unique constraints -> ``Conflict``;
  * migrations: one advisory lock, so nodes starting together migrate once.
- Reads of several statements are REPEATABLE READ READ ONLY: one snapshot, as in SQLite; a
  read of one statement runs alone (its own snapshot, two round trips fewer).
- Backup: ``diemcau backup`` refuses (pg_dump is the tool; see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import psycopg

from signaling.store.locate import redact
from signaling.store.models import Conflict, StoreError
from signaling.store.pg_dialect import PgConn, PgRow, explain, pg_migrations, pg_row
from signaling.store.sqlite import SqliteStore

T = TypeVar("T")
THREADS = 4
"""Read threads (and connections) per node, besides the one writing (SQLite has one for all)."""
CONNECT_TIMEOUT_S = 10
RETRIES = 3
"""Runs of a write transaction PostgreSQL aborted for a deadlock with another node's."""
LOCK_BASE = 0x64696D_6300_0000
"""Advisory lock keys (bigint): this base plus a number per thing serialised."""
LOCKS = {"migrations": LOCK_BASE + 1, "audit": LOCK_BASE + 2}


class PgStore(SqliteStore):
    networked = True
    _for_update = " FOR UPDATE"
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, threads: int = THREADS) -> None:  # noqa: D107
        # Not SqliteStore.__init__: no file, a pool of threads with a connection each.
        self.url = url
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pgstore")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgstore-write")
        self._local = threading.local()
        self._opened: list[psycopg.Connection[PgRow]] = []
        self._guard = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> PgStore:  # type: ignore[override]
        """Connect and migrate; ``StoreError`` naming the (redacted) URL if that fails."""
        store = cls(url)
        try:
            await store._run(store._connect)
        except psycopg.Error as exc:
            await store.close()
            why = " ".join(line.strip() for line in str(exc).splitlines()) or type(exc).__name__
            raise StoreError(f"cannot open the store at {redact(url)}: {why}") from None
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        # Calls already queued finish first (as SqliteStore's do); then the connections close.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown, True)
        await loop.run_in_executor(None, self._executor.shutdown, True)
        self._closed = True
        with self._guard:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    # -- plumbing (runs on the pool's threads) -------------------------------------------------

    def _connection(self) -> psycopg.Connection[PgRow]:
        if self._closed:
            raise RuntimeError("store is closed")
        conn: psycopg.Connection[PgRow] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=pg_row,
                                   connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="diemcau")
            self._local.conn = conn
            with self._guard:  # (dead ones are dropped: a long run may reconnect many times)
                self._opened = [c for c in self._opened if not c.closed] + [conn]
        return conn

    def _connect(self) -> None:
        self._migrate()

    def _migrate(self) -> None:
        conn = self._connection()
        for number, statements in enumerate(pg_migrations(), start=1):
            def step(c: PgConn, number: int = number, statements: list[str] = statements) -> None:
                c.execute("SELECT pg_advisory_xact_lock(?)", (LOCKS["migrations"],))
                c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                if self._version(cast(sqlite3.Connection, c)) >= number:
                    return  # another node migrated meanwhile
                for statement in statements:
                    c.conn.execute(statement)  # DDL as written: no placeholders in it
                c.execute("DELETE FROM schema_version")
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            self._in_transaction(conn, "BEGIN", step)

    def _first(self, sql: str, args: tuple[object, ...] = ()) -> tuple[
            psycopg.Connection[PgRow], psycopg.Cursor[PgRow]]:
        """Run the first statement of a call, on a new connection if this thread's has died
        meanwhile (PostgreSQL restarted, an idle connection cut): nothing was done on the dead
        one, so once more is safe. A failure later in the call is the caller's error."""
        conn = self._connection()
        try:
            return conn, PgConn(conn).execute(sql, args)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
        conn = self._connection()
        return conn, PgConn(conn).execute(sql, args)

    def _in_transaction(self, conn: psycopg.Connection[PgRow] | None, begin: str,
                        fn: Callable[[PgConn], T]) -> T:
        if conn is None:
            conn, _ = self._first(begin)
        else:
            conn.execute(begin)
        try:
            result = fn(PgConn(conn))
        except psycopg.errors.IntegrityError as exc:
            _rollback(conn)
            raise Conflict(explain(exc)) from None
        except BaseException:
            _rollback(conn)
            raise
        conn.execute("COMMIT")
        return result

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # PgConn offers what the SQL methods use of sqlite3.Connection (execute, executemany;
        # rows by name and by index), so they run unchanged.
        for attempt in range(1, RETRIES + 1):
            try:
                return self._in_transaction(None, "BEGIN",
                                            lambda c: fn(cast(sqlite3.Connection, c)))
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                # Two nodes' sweeps (expired sessions, removals) may delete overlapping rows in
                # different orders; PostgreSQL aborts one. The transaction is whole or nothing,
                # so it is run again.
                if attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._tx, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def snapshot() -> T:
            return self._in_transaction(
                None, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                lambda c: fn(cast(sqlite3.Connection, c)))
        return await self._run(snapshot)

    async def _one(self, sql: str, args: tuple[object, ...]) -> Any:
        # One statement is its own snapshot: no BEGIN/COMMIT round trips around it.
        return await self._run(lambda: self._first(sql, args)[1].fetchone())

    async def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        return await self._run(lambda: self._first(sql, args)[1].fetchall())

    def _serialise(self, c: sqlite3.Connection, what: str) -> None:
        c.execute("SELECT pg_advisory_xact_lock(?)", (LOCKS[what],))

    @property
    def _db(self) -> sqlite3.Connection:
        raise RuntimeError("PgStore has no SQLite connection")

    def _disconnect(self) -> None:
        pass

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _rollback(conn: psycopg.Connection[PgRow]) -> None:
    if conn.broken or conn.closed:
        return  # the server ended the transaction with the connection; the next call reconnects
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()
