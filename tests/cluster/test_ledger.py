"""The cluster's Redis scripts against a real redis-server: exact seats under concurrent joins
from several nodes, one room per identity, placement, and a dead node's seats freed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.cluster.ledger import parse_seat_reply
from signaling.cluster.node import ClusterNode
from tests.cluster.redisproc import RedisServer, running_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def nodes(url: str, count: int) -> list[ClusterNode]:
    out = []
    for i in range(count):
        node = ClusterNode(url, f"http://127.0.0.1:{9000 + i}", "test", node_id=f"n{i}")
        await node.start()
        out.append(node)
    return out


async def test_fifty_concurrent_seats_from_three_nodes_fill_a_room_of_26_exactly(
        redis_server: RedisServer) -> None:
    cluster = await nodes(redis_server.url, 3)
    try:
        outcomes = await asyncio.gather(*(
            cluster[i % 3].seat("hall", f"guest:{i}", f"s{i}", capacity=26, counted=True,
                                take_over=False) for i in range(50)))
        results = [o.result for o in outcomes]
        assert results.count("ok") == 26 and results.count("full") == 24
        assert await cluster[0].count("hall") == 26
        # a seat freed on leave is taken by the next join, and no more
        seated = [i for i, o in enumerate(outcomes) if o.result == "ok"]
        assert await cluster[1].release("hall", f"guest:{seated[0]}", f"s{seated[0]}")
        again = await asyncio.gather(*(
            cluster[2].seat("hall", f"late:{i}", f"l{i}", capacity=26, counted=True,
                            take_over=False) for i in range(5)))
        assert [o.result for o in again].count("ok") == 1
        assert await cluster[0].count("hall") == 26
    finally:
        for node in cluster:
            await node.close()


async def test_one_room_per_identity_across_nodes_and_take_over(
        redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server.url, 2)
    try:
        assert (await a.seat("r1", "account:7", "sa", capacity=5, counted=True,
                             take_over=False)).result == "ok"
        already = await b.seat("r2", "account:7", "sb", capacity=5, counted=True,
                               take_over=False)
        assert (already.result, already.previous_room, already.previous_node) == (
            "already", "r1", "n0")
        moved = await b.seat("r2", "account:7", "sb", capacity=5, counted=True, take_over=True)
        assert (moved.result, moved.previous_room, moved.previous_session,
                moved.previous_node) == ("ok", "r1", "sa", "n0")
        assert await a.count("r1") == 0 and await a.count("r2") == 1
        # the old session leaving later must not free the new seat
        assert not await a.release("r1", "account:7", "sa")
        assert not await a.release("r2", "account:7", "sa")
        assert await b.count("r2") == 1
        # the recorder takes no seat: a full room still records
        assert (await a.seat("r2", "recorder:r2", "rec", capacity=1, counted=False,
                             take_over=False)).result == "ok"
        assert await a.count("r2") == 1
    finally:
        await a.close()
        await b.close()


async def test_room_names_and_identities_with_separators_stay_apart(
        redis_server: RedisServer) -> None:
    (a,) = await nodes(redis_server.url, 1)
    try:
        assert (await a.seat("a|b", "x|y", "s1", capacity=1, counted=True,
                             take_over=False)).result == "ok"
        assert (await a.seat("a", "x|y|z", "s2", capacity=1, counted=True,
                             take_over=False)).result == "ok"
        assert await a.release("a|b", "x|y", "s1")
        assert await a.count("a|b") == 0 and await a.count("a") == 1
    finally:
        await a.close()


async def test_placement_spreads_and_a_dead_node_is_swept(redis_server: RedisServer) -> None:
    a, b, c = await nodes(redis_server.url, 3)
    try:
        placed = [await a.place(f"room{i}") for i in range(6)]
        assert all(card is not None for card in placed)
        owners = [card.node_id for card in placed if card is not None]
        assert sorted(set(owners)) == ["n0", "n1", "n2"], owners  # least loaded first
        again = await b.place("room0")  # once placed, everyone agrees
        assert again is not None and again.node_id == owners[0]
        # c dies: no goodbye, its heartbeat stops
        for task in c._tasks:
            task.cancel()
        await c.seat("room9", "guest:c", "sc", capacity=5, counted=True, take_over=False)
        await c.redis.delete("dc:alive:n2")
        freed = await a.sweep()
        assert freed == {"n2": 1}
        assert await a.count("room9") == 0
        rooms_of_c = [f"room{i}" for i, o in enumerate(owners) if o == "n2"]
        for room in rooms_of_c:
            card = await a.place(room)
            assert card is not None and card.node_id in ("n0", "n1")
        assert [n.node_id for n in await a.nodes()] == ["n0", "n1"]
        assert await b.sweep() == {}  # already done: idempotent
    finally:
        for node in (a, b, c):
            await node.close()


def test_a_malformed_seat_reply_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected seat reply"):
        parse_seat_reply([b"maybe"])
    with pytest.raises(ValueError, match="unexpected seat reply"):
        parse_seat_reply([b"ok", b"r"])
    assert parse_seat_reply([b"full", b"26"]).count == 26
