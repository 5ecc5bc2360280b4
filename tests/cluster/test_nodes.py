"""Three real `diemcau serve --redis` processes and a real redis-server on loopback: a join at
any node reaches the room's node, a room's limit holds exactly under concurrent joins spread
over the nodes, a killed node's seats are freed and its room placed anew, and a Redis restart
is survived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from loadtest.client import SignalingError, SyntheticParticipant
from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import RedisServer, running_redis
from tests.integration.test_recording import get_json, operator_token
from tests.serverproc import Server

CAPACITY = 26
JOIN_TIMEOUT_S = 30.0
DEATH_TIMEOUT_S = 20.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Server]]]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        servers = start_nodes(stack, tmp_path, redis_server.url, 3, [
            "--room-capacity", str(CAPACITY), "--max-unjoined-per-address", "200"])
        yield redis_server, servers


def seated(redis_server: RedisServer, room: str) -> int:
    client = redis.Redis.from_url(redis_server.url)
    try:
        return int(client.get(f"dc:count:{room}") or 0)
    finally:
        client.close()


def placed_on(redis_server: RedisServer, room: str) -> str | None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        node = client.get(f"dc:place:{room}")
        return node.decode() if node else None
    finally:
        client.close()


async def join_quietly(person: SyntheticParticipant) -> str:
    """Join and say how it went: 'joined' or the refusal's code."""
    try:
        await person.join(JOIN_TIMEOUT_S)
    except SignalingError as exc:
        return str(exc.code)
    return "joined"


async def test_fifty_joins_over_three_nodes_into_a_room_of_26_admit_exactly_26(
        cluster: tuple[RedisServer, list[Server]]) -> None:
    redis_server, servers = cluster
    # fifty people from fifty homes (one 127.0.0.x each), as a meeting's start looks
    people = [SyntheticParticipant(servers[i % 3].base_url, "hoi-nghi", f"P{i}", audio=False,
                                   video=False, source_address=f"127.0.0.{i + 10}")
              for i in range(50)]
    try:
        outcomes = await asyncio.gather(*(join_quietly(p) for p in people))
        assert outcomes.count("joined") == CAPACITY, Counter(outcomes)
        assert outcomes.count("room-full") == 50 - CAPACITY, Counter(outcomes)
        node = placed_on(redis_server, "hoi-nghi")
        assert node is not None
        home = servers[int(node[-1])].base_url
        # everyone who got in is on the room's node; two thirds of them came through another
        joined = [p for p, o in zip(people, outcomes, strict=True) if o == "joined"]
        assert all(p.base_url == home for p in joined)
        assert sum(p.redirects for p in people) >= 25
        assert seated(redis_server, "hoi-nghi") == CAPACITY
        # any node's API shows every node and where the room runs
        other = servers[(int(node[-1]) + 2) % 3]
        view = get_json(other.base_url + "/api/cluster",
                        operator_token(other.base_url, other.log_text()))
        assert sorted(n["id"] for n in view["nodes"]) == ["node0", "node1", "node2"]
        assert {"name": "hoi-nghi", "node": node, "participants": CAPACITY} in view["rooms"]
        # leaving frees the seat across the cluster: a late join elsewhere gets it
        await joined[0].leave()
        ok = await _wait(lambda: seated(redis_server, "hoi-nghi") == CAPACITY - 1, 10.0)
        assert ok, seated(redis_server, "hoi-nghi")
        late = SyntheticParticipant(servers[(int(node[-1]) + 1) % 3].base_url, "hoi-nghi",
                                    "Late", audio=False, video=False)
        people.append(late)
        assert await join_quietly(late) == "joined"
        assert seated(redis_server, "hoi-nghi") == CAPACITY
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)


async def test_a_killed_node_frees_its_seats_and_its_room_moves(
        cluster: tuple[RedisServer, list[Server]]) -> None:
    redis_server, servers = cluster
    people = [SyntheticParticipant(servers[i % 3].base_url, "huyen", f"Q{i}", audio=False,
                                   video=False) for i in range(6)]
    try:
        assert await asyncio.gather(*(join_quietly(p) for p in people)) == ["joined"] * 6
        node = placed_on(redis_server, "huyen")
        assert node is not None
        victim = servers[int(node[-1])]
        killed_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(5)
        freed = await _wait(lambda: seated(redis_server, "huyen") == 0, DEATH_TIMEOUT_S)
        freed_s = time.monotonic() - killed_at
        assert freed, f"seats still held {DEATH_TIMEOUT_S} s after the node died"
        # everyone rejoins through a node that lives; the room is placed anew there
        alive = [s for s in servers if s is not victim]
        for person in people:
            await person.close()
        again = [SyntheticParticipant(alive[i % 2].base_url, "huyen", f"Q{i}", audio=False,
                                      video=False) for i in range(6)]
        people = again
        assert await asyncio.gather(*(join_quietly(p) for p in again)) == ["joined"] * 6
        rejoined_s = time.monotonic() - killed_at
        new_node = placed_on(redis_server, "huyen")
        assert new_node is not None and new_node != node
        assert seated(redis_server, "huyen") == 6
        print(f"\nfailover: seats freed {freed_s:.1f} s after kill -9, six rejoined by "
              f"{rejoined_s:.1f} s; room moved {node} -> {new_node}")
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)


async def test_a_redis_restart_is_refused_clearly_then_survived(
        cluster: tuple[RedisServer, list[Server]]) -> None:
    redis_server, servers = cluster
    first = SyntheticParticipant(servers[0].base_url, "xa", "A", audio=False, video=False)
    people = [first]
    try:
        assert await join_quietly(first) == "joined"
        redis_server.stop()
        during = SyntheticParticipant(servers[1].base_url, "phuong", "B", audio=False,
                                      video=False)
        people.append(during)
        assert await join_quietly(during) == "cluster-unavailable"
        redis_server.start()  # same port, empty: the nodes register again by themselves

        async def joins_again() -> bool:
            person = SyntheticParticipant(servers[1].base_url, "phuong", "C", audio=False,
                                          video=False)
            people.append(person)
            outcome = await join_quietly(person)
            if outcome != "joined":
                await person.close()
            return outcome == "joined"

        deadline = time.monotonic() + 20.0
        ok = False
        while not ok and time.monotonic() < deadline:
            ok = await joins_again()
            if not ok:
                await asyncio.sleep(0.5)
        assert ok, "no join succeeded within 20 s of Redis coming back"
        for server in servers:
            assert "Traceback" not in server.log_text()
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)


async def _wait(predicate: object, timeout: float) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return True
        await asyncio.sleep(0.1)
    return False
