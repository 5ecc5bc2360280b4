"""What a cluster tells its clients so that they can rejoin elsewhere when their node dies
(issue 14), on three real `diemcau serve --redis` processes and a real redis-server: `joined`
lists the other live nodes, a `cluster` message follows a node's death, the dead node's pages
may still open their WebSocket at a live node, and without --redis nothing is listed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import RedisServer, running_redis
from tests.serverproc import Server, running_server

WAIT_S = 20.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Server]]]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        servers = start_nodes(stack, tmp_path, redis_server.url, 3)
        yield redis_server, servers


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str,
                  timeout: float = WAIT_S) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {kind!r} within {timeout} s")
        message = await ws.receive_json(timeout=left)
        if message.get("type") in (kind, "error"):
            return dict(message)


async def join(http: aiohttp.ClientSession, base_url: str, room: str, name: str
               ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any], str]:
    """Join at ``base_url``, following one `wrong-node` redirect; the socket, `joined` and the
    node's base URL."""
    for _ in range(2):
        ws = await http.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
        await ws.send_json({"type": "join", "room": room, "name": name})
        reply = await receive(ws, "joined")
        if reply["type"] == "joined":
            return ws, reply, base_url
        await ws.close()
        assert reply.get("code") == "wrong-node", reply
        base_url = reply["address"]
    raise AssertionError("redirected twice")


async def test_joined_lists_the_other_nodes_and_a_death_is_told(
        cluster: tuple[RedisServer, list[Server]]) -> None:
    redis_server, servers = cluster
    urls = [s.base_url for s in servers]
    async with aiohttp.ClientSession() as http:
        ws, joined, home = await join(http, urls[0], "tinh", "A")
        try:
            # the list is refreshed each heartbeat: a node that registered after ours last
            # looked comes in a `cluster` message
            expected = sorted(u for u in urls if u != home)
            nodes = joined["nodes"]
            for _ in range(3):
                if nodes == expected:
                    break
                assert set(nodes) < set(expected), nodes
                nodes = (await receive(ws, "cluster"))["nodes"]
            assert nodes == expected
            # a node dies (not ours): the next `cluster` message no longer lists it
            victim = next(s for s in servers if s.base_url != home)
            survivor = next(u for u in urls if u not in (home, victim.base_url))
            killed_at = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(5)
            update = await receive(ws, "cluster")
            told_s = time.monotonic() - killed_at
            assert update == {"type": "cluster", "nodes": [survivor]}
            print(f"\nnode list: a death told to clients {told_s:.1f} s after kill -9")
        finally:
            await ws.close()
        # once swept, the dead node is gone from the registry, yet its pages may still open
        # their WebSocket at the live nodes (the Origin check); an unknown origin may not
        client = redis.Redis.from_url(redis_server.url)
        try:
            deadline = time.monotonic() + WAIT_S
            while client.sismember("dc:nodes", victim_id(victim, servers)) \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not client.sismember("dc:nodes", victim_id(victim, servers))
        finally:
            client.close()
        ws_url = survivor.replace("http", "ws", 1) + "/ws"
        async with http.ws_connect(ws_url, origin=victim.base_url) as accepted:
            await accepted.send_json({"type": "ping", "id": 1})
            assert (await receive(accepted, "pong"))["type"] == "pong"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url, origin="http://127.0.0.1:1")
        assert refused.value.status == 403


def victim_id(victim: Server, servers: list[Server]) -> str:
    return f"node{servers.index(victim)}"


async def test_without_redis_no_nodes_are_listed(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        async with aiohttp.ClientSession() as http:
            ws, joined, _ = await join(http, server.base_url, "xa", "B")
            try:
                assert "nodes" not in joined
                assert joined["participant_id"]
            finally:
                await ws.close()
