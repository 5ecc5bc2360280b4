"""A room's sitting kept in Redis (signaling/cluster/sitting.py) against a real redis-server: one
node's changes are continued by another, the hash expires with the room, a corrupt or oversized
hash (Redis contents are untrusted-ish input) starts a fresh sitting with a log line, never an
exception, and an ended sitting is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from signaling.cluster.sitting import (
    KEY,
    MAX_ENTRIES,
    MAX_FIELD_BYTES,
    MAX_IDENTITY,
    SittingBook,
    SittingState,
    decode_state,
    encode_fields,
)
from tests.cluster.redisproc import RedisServer, running_redis

WAIT_S = 10.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def until(check: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def book(url: str, ttl_s: float = 60.0) -> SittingBook:
    import redis.asyncio as aioredis
    out = SittingBook(aioredis.Redis.from_url(url), ttl_s)
    out.start()
    return out


async def test_another_node_continues_the_sitting_and_an_ended_one_is_gone(
        redis_server: RedisServer) -> None:
    sync = redis.Redis.from_url(redis_server.url)
    a, b = book(redis_server.url), book(redis_server.url)
    try:
        state = await a.adopt("phong")
        a.hand("phong", "account:7", 100.0)
        a.hand("phong", "account:8", 101.0)
        a.hand("phong", "account:8", None)
        a.lock("phong", True)
        a.pin("phong", "account:7")
        a.admitted("phong", "guest:3:ab")
        a.removed("phong", "account:9", time.time() + 3600, time.time())
        a.line("phong")
        a.line("phong")
        assert await until(lambda: not a._dirty)
        assert 0 < sync.pttl(KEY + "phong") <= 60_000  # it expires with the room
        # node A is gone (its memory with it): node B reads the same sitting back
        continued = await b.adopt("phong")
        assert continued.id == state.id
        assert continued.hands == {"account:7": 100.0}
        assert continued.locked and continued.pinned == "account:7"
        assert continued.admitted == ["guest:3:ab"] and "account:9" in continued.removed
        assert continued.lines == 2
        b.end("phong")  # the room emptied on B: the sitting is over
        assert await until(lambda: not sync.exists(KEY + "phong"))
        assert (await b.adopt("phong")).id != state.id  # the next one is new
    finally:
        await a.close()
        await b.close()
        sync.close()


@pytest.mark.parametrize("fields", [
    {"id": b"not json"},
    {"id": b'"../../etc"'},  # not an id of ours
    {"hands": b'{"account:1": 5}'},  # no id
    {"id": b'"0123456789abcdef"', "hands": b'{"account:1": "soon"}'},
    {"id": b'"0123456789abcdef"', "locked": b'"yes"'},
    {"id": b'"0123456789abcdef"', "admitted": b"[" + b",".join(
        b'"g%d"' % i for i in range(MAX_ENTRIES + 1)) + b"]"},
    {"id": b'"0123456789abcdef"', "pinned": b'"' + b"x" * 5000 + b'"'},
    {"id": b'"0123456789abcdef"', "lines": b"-1"},
    {"id": b'"0123456789abcdef"', "removed": b"[" * 100_000},
    {"id": b'"0123456789abcdef"', "hands": b'{"a": 1e300}'},
])
async def test_a_corrupt_sitting_starts_fresh_and_is_overwritten(
        redis_server: RedisServer, fields: dict[str, bytes]) -> None:
    sync = redis.Redis.from_url(redis_server.url)
    sync.hset(KEY + "phong", mapping=fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_state(sync.hgetall(KEY + "phong"))  # type: ignore[arg-type]
    node = book(redis_server.url)
    try:
        state = await node.adopt("phong")  # no exception: a new sitting
        assert state.hands == {} and not state.locked and state.admitted == []
        assert node.corrupt == 1
        node.hand("phong", "account:1", 1.0)
        assert await until(lambda: not node._dirty)
        assert decode_state(sync.hgetall(KEY + "phong")) == state  # type: ignore[arg-type]
    finally:
        await node.close()
        sync.close()


async def test_unknown_fields_are_ignored_and_counts_stay_bounded(
        redis_server: RedisServer) -> None:
    sync = redis.Redis.from_url(redis_server.url)
    sync.hset(KEY + "phong", mapping={"id": b'"0123456789abcdef"', "later": b"{}"})
    node = book(redis_server.url)
    try:
        state = await node.adopt("phong")
        assert state.id == "0123456789abcdef"
        for i in range(MAX_ENTRIES + 50):
            node.admitted("phong", f"guest:{i}:x")
            node.hand("phong", f"account:{i}", float(i))
        node.hand("phong", "x" * 5000, 1.0)  # beyond an identity's bound: not kept
        assert len(state.admitted) == MAX_ENTRIES and state.admitted[-1] == "guest:1049:x"
        assert len(state.hands) == MAX_ENTRIES and "account:0" not in state.hands
        assert await until(lambda: not node._dirty)
        again = decode_state(sync.hgetall(KEY + "phong"))  # type: ignore[arg-type]
        assert again is not None and len(again.hands) == MAX_ENTRIES
    finally:
        await node.close()
        sync.close()


async def test_redis_down_starts_a_fresh_sitting_and_the_writer_keeps_trying(
        tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        url = server.url
        node = book(url)
        await node.adopt("phong")
        assert await until(lambda: not node._dirty)
        server.stop()
        other = book(url)
        try:
            state = await other.adopt("phong")  # no answer: a new sitting, no exception
            assert state.id and other.corrupt == 0
            other.hand("phong", "account:1", 1.0)
            assert await until(lambda: other.write_failures >= 1)
        finally:
            await other.close()
            await node.close()


def test_the_largest_valid_sitting_reads_back_and_a_larger_field_is_refused() -> None:
    widest = "ư" * MAX_IDENTITY  # two bytes a character in UTF-8
    state = SittingState(id="0123456789abcdef", hands={
        f"{i:04d}{widest}"[:MAX_IDENTITY]: 1e10 for i in range(MAX_ENTRIES)})
    fields = encode_fields(state, ("id", "hands"))
    assert decode_state(fields) == state  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_state({"id": fields["id"], "lines": b" " * (MAX_FIELD_BYTES + 1)})
