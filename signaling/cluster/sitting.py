"""A room's sitting in Redis, so that it survives its node's death (issue 14).

A *sitting* (``signaling/room_extras.py``) is one meeting of a room: its chat lines are stored
under its id, and its small live state (raised hands, the lock, the pinned participant, the
lobby guests a host let in, the people a host removed) lives in the node's memory. With
``--redis`` that state is also written, on every change, to one hash per room
(``dc:sitting:<room>``) that expires with the room's placement (the node's heartbeat keeps it,
``REFRESH_SCRIPT``); when the node dies and the room is placed anew, the node that takes it
over reads the hash back and continues the same sitting: the participants' automatic rejoin
finds their chat history (the store, under the same id), their hands still raised, the room
still locked and the admitted guest past the lobby.

People are named by *identity* here (``account:7``, ``guest:3:ab12``), not by participant id:
a rejoin on another node is a new session with a new participant id.

What Redis holds is read back as untrusted input: every field is decoded with msgspec against
``SittingState`` (sizes and counts bounded); a corrupt hash starts a fresh sitting with a log
line, never an exception on the join path. A Redis that does not answer starts a fresh sitting
too (the join must not wait on it); writes are retried by one writer task, always with the
latest values, so they cannot arrive out of order.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.cluster.node import REDIS_TIMEOUT_S, _result, _text

logger = logging.getLogger(__name__)

KEY = "dc:sitting:"
SITTING_TTL_S = 60.0
"""A sitting whose node stopped refreshing it lasts this long: ample for the participants'
automatic rejoin (3-5 s after a node's death), short enough that people coming back later
start a new meeting."""
MAX_ENTRIES = 1000
"""Hands, admitted guests and removed people a sitting keeps (each), at most."""
MAX_IDENTITY = 256
MAX_FIELD_BYTES = MAX_ENTRIES * (4 * MAX_IDENTITY + 32)
"""The largest field a valid sitting writes (UTF-8, four bytes a character at most); a larger
one is refused before any parser sees it."""
RETRY_S = 1.0

Identity = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_IDENTITY)]
SittingId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8,32}$")]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]


class SittingState(msgspec.Struct, kw_only=True):
    """What a sitting keeps across a node's death. One hash field per attribute (JSON)."""

    id: SittingId
    hands: Annotated[dict[Identity, Seconds], msgspec.Meta(max_length=MAX_ENTRIES)] = {}
    """identity -> when the hand went up"""
    locked: bool = False
    pinned: Identity | None = None
    admitted: Annotated[list[Identity], msgspec.Meta(max_length=MAX_ENTRIES)] = []
    """lobby guests a host let in: their rejoin skips the lobby"""
    present: Annotated[list[Identity], msgspec.Meta(max_length=MAX_ENTRIES)] = []
    """who is in the sitting (left when they leave): a lock keeps out newcomers, not those
    whose node died under them"""
    removed: Annotated[dict[Identity, Seconds], msgspec.Meta(max_length=MAX_ENTRIES)] = {}
    """identity -> until when a host's removal keeps them out"""
    lines: Annotated[int, msgspec.Meta(ge=0, le=10**7)] = 0
    """chat lines sent (the sitting's cap, signaling/chat.py)"""


FIELDS: tuple[str, ...] = SittingState.__struct_fields__
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    field.name: msgspec.json.Decoder(field.type) for field in msgspec.structs.fields(SittingState)}
"""Each field decoded against its own type: an untyped decode would follow any nesting
(100,000 ``[`` raised RecursionError)."""


def new_state() -> SittingState:
    return SittingState(id=secrets.token_hex(8))


def encode_fields(state: SittingState, names: set[str] | tuple[str, ...]) -> dict[str, bytes]:
    return {name: msgspec.json.encode(getattr(state, name)) for name in names}


def decode_state(raw: Mapping[bytes | str, bytes | str]) -> SittingState | None:
    """The hash as read from Redis; None when there is none. ValueError when it is corrupt
    (bad JSON, wrong types, sizes beyond the bounds, no id); unknown fields are ignored (a
    newer node's)."""
    if not raw:
        return None
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        name = _text(key) if isinstance(key, bytes | str) else ""
        if name in FIELDS:
            if len(value) > MAX_FIELD_BYTES:
                raise ValueError(f"sitting field {name!r} of {len(value)} bytes")
            fields[name] = _DECODERS[name].decode(value)
    return msgspec.convert(fields, SittingState)


def _bounded(entries: dict[str, float]) -> None:
    """Keep at most MAX_ENTRIES: those of the largest values (the latest)."""
    while len(entries) > MAX_ENTRIES:
        del entries[min(entries, key=entries.__getitem__)]


class SittingBook:
    """This node's live sittings and their copies in Redis. ``adopt`` when a room's sitting
    starts here (the one in Redis, or a new one), the change methods on every change (they
    never wait: one writer task writes), ``end`` when the room empties."""

    def __init__(self, redis: aioredis.Redis, ttl_s: float = SITTING_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._live: dict[str, SittingState] = {}
        self._dirty: dict[str, set[str] | None] = {}  # room -> fields to write; None: delete
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.corrupt = 0  # hashes read back that failed validation
        self.write_failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="cluster-sittings")

    async def close(self) -> None:
        """Write what is pending (bounded), then stop."""
        if self._task is None:
            return
        self._wake.set()
        for _ in range(int(REDIS_TIMEOUT_S / 0.05)):
            if not self._dirty:
                break
            await asyncio.sleep(0.05)
        # redis-py may turn a cancellation inside a command into a connection error (caught
        # below): the loop checks ``_closing`` too, and the wait is bounded either way
        self._closing = True
        self._task.cancel()
        await asyncio.wait([self._task], timeout=REDIS_TIMEOUT_S)
        self._task = None

    # -- reading ---------------------------------------------------------------------------------

    def live(self, room: str) -> SittingState | None:
        return self._live.get(room)

    async def load(self, room: str) -> SittingState | None:
        """The sitting Redis holds for ``room``, validated; None when there is none, it is
        corrupt (logged; it will be overwritten) or Redis does not answer."""
        try:
            raw: dict[bytes | str, bytes | str] = await _result(self.redis.hgetall(KEY + room))
        except (RedisError, OSError) as exc:
            logger.warning("cluster: sitting of %r not read (%s); a new one starts", room, exc)
            return None
        try:
            return decode_state(raw)
        except ValueError as exc:
            self.corrupt += 1
            logger.warning("cluster: the sitting of %r in Redis is corrupt (%s); a new one "
                           "starts", room, exc)
            return None

    async def peek(self, room: str) -> SittingState | None:
        """The live sitting here, else the one in Redis (for admission: nothing is adopted)."""
        state = self._live.get(room)
        if state is not None or self._dirty.get(room, set()) is None:
            return state
        return await self.load(room)

    async def adopt(self, room: str) -> SittingState:
        """The room's sitting starts on this node: continue the one Redis holds (its node
        died) or begin a new one."""
        state = self._live.get(room)
        if state is not None:
            return state
        ended_here = room in self._dirty and self._dirty[room] is None
        loaded = None if ended_here else await self.load(room)
        state = self._live.get(room)  # another joiner adopted it meanwhile
        if state is not None:
            return state
        if loaded is not None:
            logger.info("cluster: room %r continues sitting %s", room, loaded.id)
        state = loaded or new_state()
        self._live[room] = state
        self._mark(room, set(FIELDS))  # whole: a corrupt hash is overwritten
        return state

    def end(self, room: str) -> None:
        """The room emptied: the sitting is over; its hash goes."""
        if self._live.pop(room, None) is not None:
            self._dirty[room] = None
            self._wake.set()

    # -- changes (synchronous; written by the writer task) ----------------------------------------

    def hand(self, room: str, identity: str, raised_at: float | None) -> None:
        state = self._live.get(room)
        if state is None or len(identity) > MAX_IDENTITY:
            return
        if raised_at is None:
            if state.hands.pop(identity, None) is None:
                return
        else:
            state.hands[identity] = raised_at
            _bounded(state.hands)
        self._mark(room, {"hands"})

    def lock(self, room: str, locked: bool) -> None:
        state = self._live.get(room)
        if state is not None and state.locked != locked:
            state.locked = locked
            self._mark(room, {"locked"})

    def pin(self, room: str, identity: str | None) -> None:
        state = self._live.get(room)
        if state is None or (identity is not None and len(identity) > MAX_IDENTITY):
            return
        state.pinned = identity
        self._mark(room, {"pinned"})

    def admitted(self, room: str, identity: str) -> None:
        state = self._live.get(room)
        if state is None or len(identity) > MAX_IDENTITY or identity in state.admitted:
            return
        state.admitted.append(identity)
        del state.admitted[:-MAX_ENTRIES]
        self._mark(room, {"admitted"})

    def present(self, room: str, identity: str, here: bool) -> None:
        state = self._live.get(room)
        if state is None or len(identity) > MAX_IDENTITY or (identity in state.present) == here:
            return
        if here:
            state.present.append(identity)
            del state.present[:-MAX_ENTRIES]
        else:
            state.present.remove(identity)
        self._mark(room, {"present"})

    def removed(self, room: str, identity: str, until: float, now: float) -> None:
        state = self._live.get(room)
        if state is None or len(identity) > MAX_IDENTITY:
            return
        for gone in [i for i, t in state.removed.items() if t <= now]:
            del state.removed[gone]
        state.removed[identity] = until
        _bounded(state.removed)
        self._mark(room, {"removed"})

    def line(self, room: str) -> None:
        state = self._live.get(room)
        if state is not None:
            state.lines += 1
            self._mark(room, {"lines"})

    # -- writing ---------------------------------------------------------------------------------

    def _mark(self, room: str, names: set[str]) -> None:
        pending = self._dirty.get(room)
        self._dirty[room] = names if pending is None else pending | names
        self._wake.set()

    async def _write_forever(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            batch, self._dirty = self._dirty, {}
            try:
                await self._write(batch)
            except (RedisError, OSError) as exc:
                self.write_failures += 1
                logger.warning("cluster: sittings not written (%s); retrying", exc)
                for room, names in batch.items():  # newer changes meanwhile win
                    if room not in self._dirty:
                        self._dirty[room] = names
                    elif names is not None and self._dirty[room] is not None:
                        self._dirty[room] = names | (self._dirty[room] or set())
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _write(self, batch: dict[str, set[str] | None]) -> None:
        ttl_ms = int(self.ttl_s * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room, names in batch.items():
                state = self._live.get(room)
                if names is None or state is None:
                    if room not in self._live:
                        pipe.delete(KEY + room)
                    continue
                pipe.hset(KEY + room, mapping=encode_fields(state, names))  # type: ignore[arg-type]
                pipe.pexpire(KEY + room, ttl_ms)
            await pipe.execute()
