"""``diemcau backup DEST``: a consistent copy of the store while the server runs.

SQLite's online backup API copies the database page by page from its own connection; if the
server writes meanwhile, the copy restarts, so what lands is one committed state, never a torn
one (copying the file with ``cp`` while WAL frames are pending is not safe). The copy is
checked (``PRAGMA integrity_check``) before it replaces ``DEST``. Only the store is copied: the
signing secret and the recordings are files in the data directory; back them up alongside.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from signaling.store import DB_FILE
from signaling.store.sqlite import BUSY_TIMEOUT_MS
from signaling.store.sqlite_ops import backup_database


@dataclass(frozen=True)
class BackupResult:
    source: Path
    dest: Path
    pages: int
    schema_version: int
    rows: int


def pg_dump_advice(store_url: str) -> str:
    """Why ``diemcau backup`` does not copy a PostgreSQL store, and what does (issue 14):
    PostgreSQL's own tool takes a consistent snapshot while every node writes."""
    from signaling.store.locate import redact

    return (f"diemcau: the store is a PostgreSQL database ({redact(store_url)}); back it up "
            "with PostgreSQL's pg_dump, which copies one consistent snapshot while the nodes "
            "write, e.g.\n  pg_dump --format=custom --file=diemcau.pgdump 'postgresql://"
            "user@host:5432/db'\n(restore: pg_restore --dbname=URL diemcau.pgdump). The "
            "dump holds the nodes' signing secret too; recordings and documents stay in each "
            "node's data directory: copy them alongside.")


def backup_store(data_dir: Path, dest: Path, now: float | None = None) -> BackupResult:
    source = data_dir / DB_FILE
    if not source.is_file():
        raise ValueError(f"no store at {source}")
    if dest.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        dest = dest / f"diemcau-{stamp}.sqlite3"
    # mode=rw: never create an empty store where the operator mistyped the path.
    conn = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        pages = backup_database(conn, dest)
    finally:
        conn.close()
    version, rows = describe_copy(dest)
    return BackupResult(source, dest, pages, version, rows)


def describe_copy(path: Path) -> tuple[int, int]:
    """(schema version, rows in all tables) of a copy: proof it opens and holds data."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        rows = sum(int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
                   for name in tables)
    finally:
        conn.close()
    return version, rows
