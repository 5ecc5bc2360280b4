"""The node list every node keeps for its clients (issue 14: a browser whose node dies rejoins
through another), against a real redis-server: the other live nodes, updated when one joins or
dies; a dead node's address still allowed as an Origin (its pages rejoin elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from signaling.cluster.node import ClusterNode
from tests.cluster.redisproc import RedisServer, running_redis

WAIT_S = 15.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def until(predicate: object, timeout: float = WAIT_S) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_each_node_lists_the_other_live_nodes_and_follows_changes(
        redis_server: RedisServer) -> None:
    seen: list[tuple[str, ...]] = []
    a = ClusterNode(redis_server.url, "http://127.0.0.1:9001", "test", node_id="a",
                    on_peers=seen.append)
    b = ClusterNode(redis_server.url, "http://127.0.0.1:9002/", "test", node_id="b")
    # a node registered with an address no client may use is never passed on
    bad = ClusterNode(redis_server.url, "http://user:secret@127.0.0.1:9003", "test",
                      node_id="bad")
    started = [a, b, bad]
    try:
        for node in started:
            await node.start()
        assert await until(lambda: a.live_peers == ("http://127.0.0.1:9002",)), a.live_peers
        assert b.live_peers in ((), ("http://127.0.0.1:9001",))
        assert await until(lambda: b.live_peers == ("http://127.0.0.1:9001",)), b.live_peers
        assert seen[-1] == ("http://127.0.0.1:9002",)
        calls = len(seen)
        # b leaves (as at death, but at once): a's list and its callback follow
        await b.close()
        started.remove(b)
        assert await until(lambda: a.live_peers == ()), a.live_peers
        assert seen[-1] == () and len(seen) == calls + 1
        # b's pages may still open their WebSocket at a (they rejoin through it)
        assert "http://127.0.0.1:9002" in a.peer_addresses
    finally:
        for node in started:
            await node.close()


async def test_a_failing_callback_does_not_stop_the_heartbeat(redis_server: RedisServer) -> None:
    def boom(nodes: tuple[str, ...]) -> None:
        raise RuntimeError("client list")

    a = ClusterNode(redis_server.url, "http://127.0.0.1:9101", "test", node_id="a",
                    on_peers=boom)
    b = ClusterNode(redis_server.url, "http://127.0.0.1:9102", "test", node_id="b")
    c: ClusterNode | None = None
    try:
        await a.start()
        await b.start()
        assert await until(lambda: a.live_peers == ("http://127.0.0.1:9102",))
        c = ClusterNode(redis_server.url, "http://127.0.0.1:9103", "test", node_id="c")
        await c.start()
        assert await until(lambda: len(a.live_peers) == 2), a.live_peers
        assert a.registered
    finally:
        for node in (a, b, c):
            if node is not None:
                await node.close()


async def test_addresses_unseen_for_a_day_are_no_longer_allowed(
        redis_server: RedisServer) -> None:
    """``dc:origins`` keeps each address with when a live node last had it: a node dead for
    longer than the horizon (24 h) is no longer an allowed Origin; one dead for an hour still
    is (its pages rejoin through the live nodes); the live nodes' stay fresh."""
    client = redis.Redis.from_url(redis_server.url)
    now = time.time()
    old, recent = "http://127.0.0.1:9201", "http://127.0.0.1:9202"
    client.zadd("dc:origins", {old: now - 25 * 3600, recent: now - 3600})
    a = ClusterNode(redis_server.url, "http://127.0.0.1:9203", "test", node_id="a")
    b = ClusterNode(redis_server.url, "http://127.0.0.1:9204", "test", node_id="b")
    try:
        await a.start()
        await b.start()
        assert await until(lambda: "http://127.0.0.1:9204" in a.peer_addresses), \
            a.peer_addresses
        assert await until(lambda: old not in a.peer_addresses), a.peer_addresses
        assert recent in a.peer_addresses
        assert client.zscore("dc:origins", old) is None
        for address in ("http://127.0.0.1:9203", "http://127.0.0.1:9204"):
            score = client.zscore("dc:origins", address)
            assert score is not None and score >= now - 5, (address, score)
        # b dies; with a short horizon (as after a day) its address goes too, a's stays
        await b.close()
        a.address_ttl_s = 0.5
        assert await until(lambda: "http://127.0.0.1:9204" not in a.peer_addresses), \
            a.peer_addresses
        assert "http://127.0.0.1:9203" in a.peer_addresses
        assert recent not in a.peer_addresses
    finally:
        await a.close()
        with contextlib.suppress(Exception):
            await b.close()
        client.close()
