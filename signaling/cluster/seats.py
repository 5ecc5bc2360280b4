"""Admission's side of a cluster: where a room runs and the seat taken in Redis, as the join
refusals a client understands (``wrong-node``, ``room-full``, ``already-in-room``,
``cluster-unavailable``). ``signaling.admission.Admission`` calls it with ``--redis``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from signaling.auth import JoinRefused
from signaling.cluster.ledger import SeatOutcome
from signaling.cluster.node import ClusterNode, ClusterUnavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def _unavailable() -> JoinRefused:
    return JoinRefused("cluster-unavailable", "the meeting service cannot reach its "
                                              "coordinator; try again in a moment",
                       retry_after=RETRY_AFTER_S)


class ClusterSeats:
    """``kick_remote(node, session)`` disconnects a session on another node (a take-over)."""

    def __init__(self, node: ClusterNode,
                 kick_remote: Callable[[str, str], None] = lambda node, session: None) -> None:
        self.node = node
        self.kick_remote = kick_remote
        self._pending: set[asyncio.Task[None]] = set()  # releases in flight

    async def check_placement(self, room_name: str) -> None:
        """A room runs on one node: a join that reached another is sent there."""
        try:
            card = await self.node.place(room_name)
        except ClusterUnavailable:
            card = None
        if card is None:
            raise _unavailable()
        if card.node_id != self.node.node_id:
            raise JoinRefused("wrong-node", f"room {room_name!r} runs on another server of "
                                            "this service: reconnecting there",
                              node=card.node_id, address=card.address)

    async def seat(self, room_name: str, capacity: int, identity: str, counted: bool,
                   session_id: str, take_over: bool) -> SeatOutcome:
        try:
            outcome = await self.node.seat(room_name, identity, session_id, capacity=capacity,
                                           counted=counted, take_over=take_over)
        except ClusterUnavailable:
            raise _unavailable() from None
        if outcome.result == "already":
            raise JoinRefused("already-in-room", f"you are already in room "
                                                 f"{outcome.previous_room!r} (another window or "
                                                 "device); choose \"take over\" to move here",
                              room=outcome.previous_room)
        if outcome.result == "full":
            raise JoinRefused("room-full", f"room {room_name!r} is full: it holds at most "
                                           f"{capacity} participants", limit=capacity)
        if outcome.previous_node and outcome.previous_node != self.node.node_id:
            self.kick_remote(outcome.previous_node, outcome.previous_session)
        return outcome

    def release(self, room_name: str, identity: str, session_id: str) -> None:
        """Free the seat in the background (leave must not wait on Redis)."""
        node = self.node

        async def release() -> None:
            try:
                await node.release(room_name, identity, session_id)
            except ClusterUnavailable as exc:  # the node's death sweep frees it later
                logger.warning("cluster: seat of %s in %r not released: %s", identity,
                               room_name, exc)

        task = asyncio.ensure_future(release())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
