"""Shared fixtures. Media tests must run inside a private network namespace
(docs/architecture.md#network-namespaces):
WebRTC stacks gather every interface, so outside one they would send to this machine's real
addresses. ``scripts/test.sh`` runs the suite under ``unshare -n``; a media test run elsewhere
fails loudly instead of leaking traffic."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from sfu.worker import MediaConfig
from signaling.app import create_app
from signaling.config import Config
from tests.pgproc import PostgresServer, start_postgres, stop_postgres


def only_loopback() -> bool:
    return {name for _index, name in socket.if_nameindex()} <= {"lo"}


@pytest.fixture(autouse=True)
def _media_needs_private_namespace(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("media") and not only_loopback():
        pytest.fail(
            "media tests must run in a private network namespace with only loopback: "
            "use scripts/test.sh (unshare -n)", pytrace=False,
        )


def make_config(tmp_path: Path, **overrides: object) -> Config:
    media = MediaConfig(ice_addresses=("127.0.0.1",))
    overrides.setdefault("open_rooms", True)
    # In-process media plane unless DIEMCAU_TEST_WORKERS asks for worker processes.
    overrides.setdefault("workers", int(os.environ.get("DIEMCAU_TEST_WORKERS", "0")))
    return Config(data_dir=tmp_path, media=media, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    """The real application on a real loopback port."""
    app = create_app(make_config(tmp_path))
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def base_url(test_server: TestServer) -> str:
    return str(test_server.make_url("")).rstrip("/")


STORES = ("sqlite", "postgresql")
"""The store backends the store and API tests run against (issue 14)."""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL 15 for the session (tests/pgproc.py), started when first needed."""
    server = start_postgres()
    yield server
    stop_postgres(server)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None: the data directory's SQLite file; else the URL of a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.fresh_url()
