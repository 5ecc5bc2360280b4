"""One node of a cluster: its card and heartbeat in Redis, the sweep that frees dead nodes'
seats, room placement, exact seats, and take-over kicks between nodes.

The scripts that decide live in ``signaling.cluster.ledger``; this module only calls them and
runs the timers. A Redis outage is not hidden: placement and seats raise ``ClusterUnavailable``
and the join is refused with a clear code (``cluster-unavailable``) rather than overfilling a
room; the heartbeat keeps trying and the node re-registers when Redis comes back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from signaling.cluster.directory import other_live_nodes
from signaling.cluster.ledger import (
    CLEAR_ROOM_SCRIPT,
    FREE_NODE_SCRIPT,
    PLACE_SCRIPT,
    REFRESH_SCRIPT,
    RELEASE_SCRIPT,
    SEAT_SCRIPT,
    SeatOutcome,
    check_id,
    parse_seat_reply,
)

logger = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
ALIVE_TTL_S = 3.0
"""A node that missed heartbeats for this long is dead: its seats are freed, its rooms placed
anew. Three beats: one slow beat on a busy machine must not kill a node."""
PLACEMENT_TTL_S = 30.0
"""A placement nobody refreshes (the room emptied, or was only looked up) lapses after this."""
REDIS_TIMEOUT_S = 2.0
ADDRESS_TTL_S = 24 * 3600.0
"""An address no live node has had for this long is no longer an allowed Origin: a dead node's
pages have rejoined elsewhere (or were closed) long before."""
ADDRESSES_KEY = "dc:origins"
"""Every node address with the time it was last seen alive (a sorted set). Not the older
``dc:addresses`` set (never pruned), which is left alone for nodes of the older version."""




async def _result(value: Any) -> Any:
    """redis-py types some async commands as ``Awaitable[T] | T`` (one stub for both clients),
    and how exactly changes between its releases (5.x and 8.x disagree): await what is
    awaitable and let the callers say what they got."""
    if inspect.isawaitable(value):
        return await value
    return value


def _text(value: bytes | str) -> str:
    """Redis replies are bytes here (no decode_responses), but the stubs allow str."""
    return value.decode() if isinstance(value, bytes) else value


class ClusterUnavailable(Exception):
    """Redis did not answer: no placement and no seat can be decided."""


@dataclass(frozen=True)
class NodeCard:
    node_id: str
    address: str  # base URL clients reach the node at (http[s]://host:port)
    load: int
    version: str
    alive: bool


class ClusterNode:
    """This process as a node. ``start()`` registers and starts the heartbeat, the sweep and the
    kick listener; ``close()`` deregisters (its seats freed at once, not after the TTL)."""

    def __init__(self, url: str, address: str, version: str, *,
                 node_id: str | None = None,
                 load: Callable[[], int] = lambda: 0,
                 rooms: Callable[[], list[str]] = list,
                 on_kick: Callable[[str], None] = lambda session_id: None,
                 on_peers: Callable[[tuple[str, ...]], None] = lambda nodes: None,
                 address_ttl_s: float = ADDRESS_TTL_S) -> None:
        self.url = url
        self.address = address.rstrip("/")
        self.version = version
        self.node_id = check_id(node_id or uuid.uuid4().hex[:12], "node id")
        self._load = load
        self._rooms = rooms
        self._on_kick = on_kick
        self._on_peers = on_peers
        self.address_ttl_s = address_ttl_s
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        self._scripts = {name: self.redis.register_script(body) for name, body in (
            ("seat", SEAT_SCRIPT), ("release", RELEASE_SCRIPT), ("clear", CLEAR_ROOM_SCRIPT),
            ("place", PLACE_SCRIPT), ("refresh", REFRESH_SCRIPT), ("free", FREE_NODE_SCRIPT))}
        self._tasks: list[asyncio.Task[None]] = []
        self.registered = False
        self._closing = False
        self.dead_nodes_freed = 0
        self.peer_addresses: frozenset[str] = frozenset({self.address})
        """Base URLs of the registered nodes (refreshed each beat): a page served by one node
        opens its WebSocket at the room's node, so their origins are allowed on /ws. Nodes that
        died stay in it (``dc:addresses``): their pages rejoin through the live nodes."""
        self.live_peers: tuple[str, ...] = ()
        """The other live nodes' addresses, for clients (signaling/cluster/directory.py);
        ``on_peers`` is called when it changes."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._register()
        self._tasks = [asyncio.create_task(self._beat_forever(), name="cluster-heartbeat"),
                       asyncio.create_task(self._listen_kicks(), name="cluster-kicks")]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # redis-py may turn a cancellation inside a command into a connection error: the
            # loops check ``_closing`` too, and the wait is bounded either way.
            await asyncio.wait(self._tasks, timeout=REDIS_TIMEOUT_S)
        self._tasks = []
        try:  # leave at once: our seats and rooms free now, not after the TTL
            await self.redis.delete(f"dc:alive:{self.node_id}")
            await self._scripts["free"](args=[self.node_id])
        except RedisError as exc:
            logger.warning("cluster: could not deregister node %s: %s", self.node_id, exc)
        await self.redis.aclose()

    async def _register(self) -> None:
        ttl_ms = int(ALIVE_TTL_S * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd("dc:nodes", self.node_id)
            pipe.zadd(ADDRESSES_KEY, {self.address: time.time()})  # pages may come from it
            pipe.hset(f"dc:node:{self.node_id}", mapping={
                "address": self.address, "version": self.version, "load": self._load(),
                "started": f"{time.time():.3f}"})
            pipe.set(f"dc:alive:{self.node_id}", "1", px=ttl_ms)
            await pipe.execute()
        self.registered = True
        logger.info("cluster: node %s registered at %s (%s)", self.node_id, self.address,
                    self.url)

    async def _beat_forever(self) -> None:
        while not self._closing:
            try:
                await self.beat()
                await self.sweep()
                await self._refresh_peers()
            except (RedisError, OSError) as exc:
                if self.registered:
                    logger.warning("cluster: Redis unreachable (%s); retrying", exc)
                self.registered = False
            await asyncio.sleep(HEARTBEAT_S)

    async def _refresh_peers(self) -> None:
        cards = await self.nodes()
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            # the live nodes' addresses seen now; those unseen for address_ttl_s pruned
            pipe.zadd(ADDRESSES_KEY, {card.address: now for card in cards if card.alive}
                      or {self.address: now})
            pipe.zremrangebyscore(ADDRESSES_KEY, "-inf", now - self.address_ttl_s)
            pipe.zrange(ADDRESSES_KEY, 0, -1)
            replies = await pipe.execute()
        known: list[bytes | str] = replies[-1]
        self.peer_addresses = frozenset(
            {self.address} | {card.address for card in cards} | {_text(a) for a in known})
        live = other_live_nodes(self.address, [(card.address, card.alive) for card in cards])
        if live != self.live_peers:
            self.live_peers = live
            try:
                self._on_peers(live)
            except Exception:  # telling clients must never stop the heartbeat
                logger.exception("cluster: could not pass the node list on")

    async def beat(self) -> None:
        """Alive, load and the placements of rooms with people here kept."""
        ttl_ms = int(ALIVE_TTL_S * 1000)
        known = await self._scripts["refresh"](
            args=[self.node_id, ttl_ms, self._load(), *self._rooms()])
        if not known:  # declared dead (a long stall, or Redis restarted empty): join again
            logger.warning("cluster: node %s was declared dead; registering again",
                           self.node_id)
            await self._register()
            for room in self._rooms():  # our rooms: ours again unless placed elsewhere
                await self.redis.set(f"dc:place:{room}", self.node_id, nx=True,
                                     px=int(PLACEMENT_TTL_S * 1000))
        elif not self.registered:
            self.registered = True
            logger.info("cluster: Redis reachable again")

    async def sweep(self) -> dict[str, int]:
        """Free the seats and rooms of nodes that stopped heartbeating; node -> seats freed."""
        freed: dict[str, int] = {}
        members: set[bytes | str] = await _result(self.redis.smembers("dc:nodes"))
        for raw in members:
            node = _text(raw)
            if node == self.node_id or await self.redis.exists(f"dc:alive:{node}"):
                continue
            count = int(await self._scripts["free"](args=[node]))
            if count >= 0:
                freed[node] = count
                self.dead_nodes_freed += 1
                logger.warning("cluster: node %s is dead: %d seats freed, its rooms unplaced",
                               node, count)
        return freed

    async def _listen_kicks(self) -> None:
        while not self._closing:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(f"dc:kick:{self.node_id}")
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self._on_kick(data.decode() if isinstance(data, bytes) else data)
            except (RedisError, OSError):
                if not self._closing:
                    await asyncio.sleep(HEARTBEAT_S)

    # -- decisions -----------------------------------------------------------------------------

    async def _call(self, name: str, args: list[Any]) -> Any:
        try:
            return await self._scripts[name](args=args)
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc

    async def place(self, room: str) -> NodeCard | None:
        """The node running ``room``, placing it on the least-loaded live node if needed; None
        when no node is alive."""
        node = await self._call("place", [room, int(PLACEMENT_TTL_S * 1000), time.time()])
        if not node:
            return None
        node_id = node.decode() if isinstance(node, bytes) else str(node)
        if node_id == self.node_id:
            return NodeCard(self.node_id, self.address, self._load(), self.version, True)
        return await self.card(node_id)

    async def seat(self, room: str, identity: str, session_id: str, *, capacity: int,
                   counted: bool, take_over: bool) -> SeatOutcome:
        reply = await self._call("seat", [room, identity, check_id(session_id, "session id"),
                                          self.node_id, capacity, int(counted),
                                          int(take_over)])
        return parse_seat_reply(reply)

    async def release(self, room: str, identity: str, session_id: str) -> bool:
        return bool(await self._call("release", [room, identity, session_id]))

    async def clear_room(self, room: str) -> int:
        return int(await self._call("clear", [room]))

    async def kick(self, node_id: str, session_id: str) -> None:
        """Ask ``node_id`` to disconnect ``session_id`` (its seat was taken over here)."""
        try:
            await self.redis.publish(f"dc:kick:{node_id}", session_id)
        except (RedisError, OSError) as exc:
            logger.warning("cluster: could not ask node %s to disconnect %s: %s", node_id,
                           session_id, exc)

    # -- what the cluster looks like -------------------------------------------------------

    async def card(self, node_id: str) -> NodeCard | None:
        try:
            fields: dict[bytes | str, bytes | str] = await _result(
                self.redis.hgetall(f"dc:node:{node_id}"))
            alive = bool(await self.redis.exists(f"dc:alive:{node_id}"))
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc
        if not fields:
            return None
        get = {_text(k): _text(v) for k, v in fields.items()}
        return NodeCard(node_id, get.get("address", ""), int(get.get("load", "0")),
                        get.get("version", ""), alive)

    async def nodes(self) -> list[NodeCard]:
        try:
            members: set[bytes | str] = await _result(self.redis.smembers("dc:nodes"))
            ids = sorted(_text(x) for x in members)
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc
        cards = [await self.card(node_id) for node_id in ids]
        return [card for card in cards if card is not None]

    async def rooms(self) -> dict[str, dict[str, Any]]:
        """Every placed room: its node and seat count."""
        out: dict[str, dict[str, Any]] = {}
        try:
            async for key in self.redis.scan_iter(match="dc:place:*", count=200):
                room = _text(key)[len("dc:place:"):]
                node = await self.redis.get(key)
                count = await self.redis.get(f"dc:count:{room}")
                if node is not None:
                    out[room] = {"node": _text(node), "participants": int(count or 0)}
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc
        return out

    async def placement(self, room: str) -> str | None:
        """The id of the node ``room`` is placed on, or None (a lookup: it places nothing)."""
        try:
            node = await self.redis.get(f"dc:place:{room}")
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc
        return None if node is None else _text(node)

    async def count(self, room: str) -> int:
        try:
            return int(await self.redis.get(f"dc:count:{room}") or 0)
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc


CLUSTER = web.AppKey("cluster", ClusterNode)
"""The app's node, with --redis (signaling/app.py ``cluster_ctx``)."""
