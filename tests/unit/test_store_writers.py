"""Several writers on one store (issue 14): what one process owning the SQLite file made safe
must stay correct when several nodes write one PostgreSQL database. Each test runs on both
backends with two stores open at once (two connections to one SQLite file; two pools of
connections to one PostgreSQL schema, as two nodes would be). Also: the migrations translate to
PostgreSQL, the audit trail refuses updates in both, and a bad ``--store`` fails at start-up
with a clear message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from signaling.settings import ConfigError, load
from signaling.store import SqliteStore, StoreError
from signaling.store.journal_models import AuditEntry, verify_chain
from signaling.store.locate import check_store_url, redact
from signaling.store.migrations import MIGRATIONS
from signaling.store.sqlite_ops import SupportNotice
from tests.pgproc import PostgresServer, open_store_for
from tests.serverproc import REPO_ROOT, free_port

WRITERS = 2
BATCHES = 15


async def two(tmp_path: Path, url: str | None) -> tuple[SqliteStore, SqliteStore]:
    return await open_store_for(tmp_path, url), await open_store_for(tmp_path, url)


def entry(node: int, n: int) -> AuditEntry:
    return AuditEntry(at=1_800_000_000.0 + n, actor=f"node{node}", action="api.update_room",
                      room="r", address="192.0.2.7", detail={"n": n})


async def test_two_nodes_appending_keep_one_audit_chain(tmp_path: Path,
                                                       store_url: str | None) -> None:
    stores = await two(tmp_path, store_url)
    try:
        async def appender(node: int) -> None:
            for n in range(BATCHES):
                await stores[node].append_audit([entry(node, n), entry(node, n + 100)])

        # Several batches in flight per node too (PgStore runs four at once).
        await asyncio.gather(*(appender(node) for node in range(WRITERS) for _ in range(3)))
        anchor, rows = await stores[1].audit_chain()
        assert len(rows) == WRITERS * 3 * BATCHES * 2
        assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
        assert verify_chain(rows, anchor) == []
        # retention from one node while the other appends still leaves one chain
        await asyncio.gather(stores[0].prune_audit(before=0.0, keep_max=10),
                             stores[1].append_audit([entry(1, 999)]))
        anchor, rows = await stores[0].audit_chain()
        assert anchor is not None and verify_chain(rows, anchor) == []
    finally:
        for store in stores:
            await store.close()


async def test_audit_rows_cannot_be_updated(tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        await store.append_audit([entry(0, 1)])
        with pytest.raises(Exception, match="append-only"):
            await store._write(lambda c: c.execute("UPDATE audit SET actor = 'someone else'"))
        _anchor, rows = await store.audit_chain()
        assert [row.actor for row in rows] == ["node0"]
    finally:
        await store.close()


async def test_two_nodes_never_claim_one_webhook_at_once(tmp_path: Path,
                                                        store_url: str | None) -> None:
    stores = await two(tmp_path, store_url)
    try:
        await stores[0].enqueue_webhooks([(f"http://127.0.0.1:9/{i}", "room_started", "{}", 10.0)
                                          for i in range(40)])
        claims = await asyncio.gather(*(stores[i % 2].claim_webhooks(20.0, 60.0, limit=7)
                                        for i in range(8)))
        claimed = [row.id for batch in claims for row in batch]
        assert len(claimed) == 40 and len(set(claimed)) == 40  # each once, all of them
        assert await stores[1].claim_webhooks(79.0, 60.0) == []  # leased
        again = await stores[1].claim_webhooks(80.0, 60.0)  # a dead claimer's lease ran out
        assert len(again) == 40
        await stores[0].webhook_delivered(again[0].id, 81.0)
        assert len(await stores[0].claim_webhooks(200.0, 60.0)) == 39
    finally:
        for store in stores:
            await store.close()


async def test_a_support_notice_is_sent_once_by_one_of_the_nodes(
        tmp_path: Path, store_url: str | None) -> None:
    stores = await two(tmp_path, store_url)
    try:
        notice = SupportNotice(7, 1_800_000_000.0, "r", "Giao ban", 1.0)
        sent = await asyncio.gather(*(stores[i % 2].add_support_notice(notice)
                                      for i in range(10)))
        assert sent.count(True) == 1
    finally:
        for store in stores:
            await store.close()


async def test_the_nodes_share_one_signing_secret(tmp_path: Path,
                                                  store_url: str | None) -> None:
    stores = await two(tmp_path, store_url)
    try:
        secrets = await asyncio.gather(*(stores[i % 2].signing_secret(bytes([i]) * 32)
                                         for i in range(6)))
        assert len(set(secrets)) == 1 and secrets[0] in {bytes([i]) * 32 for i in range(6)}
    finally:
        for store in stores:
            await store.close()


async def test_nodes_starting_together_migrate_once(postgres: PostgresServer) -> None:
    from signaling.store.pg import PgStore

    url = postgres.fresh_url()
    stores = await asyncio.gather(*(PgStore.open(url) for _ in range(4)))
    try:
        assert {await s.schema_version() for s in stores} == {len(MIGRATIONS)}
        rows = await stores[0]._read(lambda c: c.execute(
            "SELECT count(*) FROM schema_version").fetchone()[0])
        assert rows == 1
    finally:
        for store in stores:
            await store.close()


async def test_nodes_starting_together_bootstrap_once(tmp_path: Path,
                                                      store_url: str | None) -> None:
    from signaling.auth import Passwords
    from signaling.control import bootstrap

    stores = await two(tmp_path, store_url)
    try:
        results = await asyncio.gather(*(bootstrap(stores[i % 2], tmp_path / f"node{i}",
                                                   Passwords.fast()) for i in range(4)))
        assert sum(result is not None for result in results) == 1  # one password printed
        assert [a.username for a in await stores[1].list_accounts()] == ["admin"]
    finally:
        for store in stores:
            await store.close()


async def test_the_store_reconnects_when_postgresql_cut_its_connections(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.fresh_url()
    store = await open_store_for(tmp_path, url)
    try:
        org = await store.create_organisation("o")
        await asyncio.gather(*(store.get_organisation(org.id) for _ in range(8)))  # 4 threads
        postgres.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'diemcau'")
        # every call after the cut is served: reads and writes, on fresh connections
        for _ in range(2):
            got = await asyncio.gather(*(store.get_organisation(org.id) for _ in range(8)))
            assert got == [org] * 8
            await store.create_room(f"r{_}", org.id)
            assert len(await store.list_rooms()) == _ + 1
    finally:
        await store.close()


async def test_a_write_postgresql_aborts_for_a_deadlock_runs_again(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.fresh_url()
    stores = [await open_store_for(tmp_path, url) for _ in range(2)]
    try:
        first = (await stores[0].create_organisation("a")).id
        second = (await stores[0].create_organisation("b")).id
        both_hold_one = threading.Barrier(2, timeout=10)
        runs = [0, 0]

        def crosswise(node: int, order: tuple[int, int]) -> Callable[[Any], None]:
            def write(c: Any) -> None:
                runs[node] += 1
                c.execute("UPDATE organisations SET created_at = 1 WHERE id = ?", (order[0],))
                if runs[node] == 1:
                    both_hold_one.wait()  # each holds one row and reaches for the other's
                c.execute("UPDATE organisations SET created_at = 2 WHERE id = ?", (order[1],))
            return write

        await asyncio.gather(stores[0]._write(crosswise(0, (first, second))),
                             stores[1]._write(crosswise(1, (second, first))))
        # PostgreSQL aborted one (or, on a busy machine, each once); it ran again and went
        # through: both calls returned, and the last to commit left both its rows
        assert max(runs) >= 2 and max(runs) <= 3, runs
        stamps = {o.id: o.created_at for o in await stores[0].list_organisations()}
        assert sorted((stamps[first], stamps[second])) == [1.0, 2.0]
    finally:
        for store in stores:
            await store.close()


async def test_both_dialects_make_the_same_tables_and_columns(
        tmp_path: Path, postgres: PostgresServer) -> None:
    lite = await open_store_for(tmp_path, None)
    pg = await open_store_for(tmp_path, postgres.fresh_url())
    try:
        tables = [row[0] for row in await lite._all(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        lite_columns = {t: [row[1] for row in await lite._all(f'PRAGMA table_info("{t}")')]
                        for t in tables}
        pg_columns: dict[str, list[str]] = {}
        for table, column in await pg._all(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
            pg_columns.setdefault(table, []).append(column)
        assert pg_columns == lite_columns
    finally:
        await lite.close()
        await pg.close()


def test_every_migration_step_has_a_postgresql_version() -> None:
    from signaling.store.pg_dialect import pg_migrations, pg_steps

    translated = pg_migrations()
    assert len(translated) == len(MIGRATIONS)
    text = "\n".join(sql for steps in translated for sql in steps)
    for sqlite_only in ("randomblob", "PRAGMA", "RAISE(ABORT", " REAL", "INTEGER PRIMARY KEY"):
        assert sqlite_only not in text
    with pytest.raises(ValueError, match="PG_REPLACEMENTS"):
        pg_steps("CREATE TABLE x (id INTEGER PRIMARY KEY AUTOINCREMENT)")
    with pytest.raises(ValueError, match="PG_REPLACEMENTS"):
        pg_steps(lambda conn: None)


@pytest.mark.parametrize("url, why", [
    ("mysql://u@h/db", "scheme 'mysql' is not supported"),
    ("sqlite:///data/diemcau.sqlite3", "scheme 'sqlite' is not supported"),
    ("./data/store.db", "scheme 'none' is not supported"),
    ("postgresql:///db", "no host"),
    ("postgresql://u@h", "no database name"),
    ("postgresql://u@h:99999/db", "not a URL"),
    ("postgresql://u@h:0/db", "port 0"),
])
def test_a_bad_store_url_is_refused_by_the_settings(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_store_url(url)
    with pytest.raises(ConfigError, match=f"'store' \\(from env DIEMCAU_STORE\\).*{why}"):
        load({}, environ={"DIEMCAU_STORE": url})


def test_passwords_are_kept_out_of_messages() -> None:
    assert redact("postgresql://dc:s3cret@db:5432/x") == "postgresql://dc:***@db:5432/x"
    assert redact("postgresql://dc@db/x") == "postgresql://dc@db/x"
    with pytest.raises(ConfigError, match="no database name") as caught:
        load({}, environ={"DIEMCAU_STORE": "postgresql://a:s3cret@h/"})
    assert "s3cret" not in str(caught.value)


async def test_wrong_credentials_fail_at_start_with_a_clear_message(
        tmp_path: Path, postgres: PostgresServer) -> None:
    bad = postgres.fresh_url().replace(postgres.password, "not-the-password")
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        await open_store_for(tmp_path, bad)
    assert "not-the-password" not in str(caught.value)
    # the server itself: one line saying why, exit status 1, no traceback
    done = subprocess.run(
        [sys.executable, "-m", "diemcau", "serve", "--data-dir", str(tmp_path / "data"),
         "--port", str(free_port()), "--workers", "0", "--store", bad],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "diemcau: cannot open the store at postgresql://diemcau:***@" in done.stderr
    assert "password authentication failed" in done.stderr
    assert "Traceback" not in done.stderr and "not-the-password" not in done.stderr
