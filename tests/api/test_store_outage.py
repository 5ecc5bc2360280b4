"""A PostgreSQL store that goes away and comes back (issue 14): /readyz says the store is not
answering while it is gone (a load balancer stops sending people), API calls fail cleanly, and
once PostgreSQL is back the store reconnects by itself, without a restart of diemcau."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient

from signaling.app import create_app
from tests.api.conftest import AiohttpClient
from tests.conftest import make_config
from tests.pgproc import start_postgres, stop_postgres

TRIES = 50


async def _ready(client: TestClient) -> tuple[int, dict[str, object]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_readyz_follows_postgresql_away_and_back(tmp_path: Path,
                                                       aiohttp_client: AiohttpClient) -> None:
    server = await asyncio.to_thread(start_postgres)  # its own: this one is stopped
    try:
        app = create_app(make_config(tmp_path, store_url=server.fresh_url()))
        client = await aiohttp_client(app)
        assert (await _ready(client))[0] == 200
        await asyncio.to_thread(server.stop)
        status, body = await _ready(client)
        assert status == 503, body
        assert any(str(r).startswith("store not answering") for r in body["reasons"]), body
        response = await client.get("/api/rooms", headers={"Authorization": "Bearer x"})
        assert response.status >= 500  # a clean error; the server itself keeps running
        assert (await client.get("/healthz")).status == 200
        await asyncio.to_thread(server.launch)
        for _ in range(TRIES):  # bounded: every store thread reconnects on its next call
            status, body = await _ready(client)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        response = await client.get("/api/rooms", headers={"Authorization": "Bearer x"})
        assert response.status == 401  # the store answers again: an unknown session
    finally:
        await asyncio.to_thread(stop_postgres, server)
