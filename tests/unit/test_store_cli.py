"""The offline commands with a PostgreSQL store (issue 14): ``token create --store`` signs with
the secret the nodes share and binds the token to the stored room, ``audit [verify] --store``
reads the shared trail, and ``backup`` refuses a PostgreSQL store, pointing at pg_dump."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from diemcau.cli import main
from signaling.auth import verify_join_token
from tests.pgproc import PostgresServer, open_store_for


async def test_token_and_audit_commands_use_the_shared_store(
        tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres.fresh_url()
    store = await open_store_for(tmp_path, url)
    try:
        org = await store.create_organisation("o")
        room = await store.create_room("Hop", org.id)
        shared = await store.signing_secret(b"\x01" * 32)  # as the first node stored it
    finally:
        await store.close()
    cli_dir = tmp_path / "elsewhere"  # a host with its own (different) data directory
    cli_dir.mkdir()
    code = await asyncio.to_thread(main, ["token", "create", "--data-dir", str(cli_dir),
                                          "--store", url, "--room", "Hop", "--name", "Chu toa",
                                          "--role", "host"])
    assert code == 0
    token = capsys.readouterr().out.splitlines()[0]
    grants = verify_join_token(shared, token, time.time(), "Hop")
    assert grants.room_instance == room.instance
    assert await asyncio.to_thread(main, ["audit", "--data-dir", str(cli_dir), "--store", url,
                                          "verify"]) == 0
    assert await asyncio.to_thread(main, ["audit", "--data-dir", str(cli_dir), "--store", url]) == 0
    assert "cli.token_create [Hop]" in capsys.readouterr().out


def test_backup_refuses_a_postgresql_store(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backup", str(tmp_path / "copy"), "--data-dir", str(tmp_path),
                 "--store", "postgresql://dc:s3cret@db.example:5432/diemcau"])
    assert code == 2
    err = capsys.readouterr().err
    assert "pg_dump" in err and "postgresql://dc:***@db.example:5432/diemcau" in err
    assert "s3cret" not in err
    assert not (tmp_path / "copy").exists()
