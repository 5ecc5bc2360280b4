"""``diemcau backup``: a copy taken while another connection keeps writing holds whole
transactions only, passes SQLite's integrity check, and replaces the destination atomically."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from diemcau.cli import main
from signaling.backup import backup_store, describe_copy
from signaling.store import DB_FILE
from signaling.store.migrations import MIGRATIONS
from signaling.store.sqlite import SqliteStore

BATCH = 10


async def test_backup_while_writing_holds_whole_transactions(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / DB_FILE)  # a migrated store
    await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE load (batch INTEGER NOT NULL, filler BLOB NOT NULL)")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        batch = 0
        while not stop.is_set() and batch < 100_000:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO load VALUES (?, randomblob(2000))",
                             [(batch,)] * BATCH)
            conn.execute("COMMIT")
            batch += 1
            written[0] = batch

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while written[0] < 50:
            assert thread.is_alive() and time.monotonic() < deadline, "the writer stalled"
            thread.join(0.01)
        copies = [backup_store(tmp_path, tmp_path / f"copy{i}.sqlite3") for i in range(3)]
    finally:
        stop.set()
        thread.join(30)
        conn.close()
    for result in copies:
        copy = sqlite3.connect(result.dest)
        try:
            sizes = copy.execute("SELECT batch, count(*) FROM load GROUP BY batch").fetchall()
            assert sizes and all(count == BATCH for _, count in sizes)  # no torn transaction
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            copy.close()
        assert result.schema_version == len(MIGRATIONS)
        assert result.dest.stat().st_mode & 0o077 == 0
        assert not result.dest.with_name(result.dest.name + ".partial").exists()
    assert describe_copy(copies[-1].dest) == (len(MIGRATIONS), copies[-1].rows)


def test_backup_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", str(tmp_path / "out.sqlite3"), "--data-dir",
                 str(tmp_path / "nowhere")]) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere" / DB_FILE).exists()  # never creates an empty store
