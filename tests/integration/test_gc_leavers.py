"""The collector and people coming and going (sfu/gctune.py, issue 11): real aiortc peers join
and leave a room of the real app, in process, so the server's own garbage can be counted.

- A leaver's objects are freed by reference counting: with the collector off, what one leave
  leaves for it is counted by ``gc.collect()``. Measured in a room of 3 (2 stay, 1 joins and
  leaves, audio + video): 968 objects per leaver before (eb17f71: the connections' listeners
  and our hooks in cycles, and the stayers' closed consumers holding the leaver's whole
  publishing connection until their m-line was reused), 20 after (pyOpenSSL's verify
  callback, 10 per connection).
- Freezing after each join and reclaiming keep the permanent generation bounded over join and
  leave cycles, and a worker left with nobody reclaims.

Freezing here freezes the test process: every test unfreezes what it froze before it ends.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loadtest.client import SyntheticParticipant, wait_until
from sfu.gctune import FreezePolicy, GcAction, GcKeeper
from sfu.room import Room
from sfu.worker import Worker
from signaling.app import MEDIA_PLANE, create_app
from tests.conftest import base_url, make_config

pytestmark = pytest.mark.media

ROOM = "gc"
TIMEOUT = 20.0
LEFT_FOR_THE_COLLECTOR = 150
"""Objects one leave may leave for the cyclic collector (measured: 20 now, 968 before)."""


@pytest.fixture
async def app_server(tmp_path: Path) -> AsyncIterator[tuple[TestServer, Worker]]:
    app = create_app(make_config(tmp_path, workers=0))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    worker = app[MEDIA_PLANE]
    assert isinstance(worker, Worker)
    try:
        yield server, worker
    finally:
        await server.close()
        gc.unfreeze()  # whatever a test froze goes back to the collector's care
        gc.enable()


def _settled(room: Room | None) -> bool:
    """Every connection of the room up, and no subscriber waiting for an answer."""
    if room is None:
        return False
    for participant in room.participants.values():
        publisher, subscriber = participant.publisher, participant.subscriber
        if publisher is None or subscriber is None:
            return False
        if publisher.pc.connectionState != "connected" or (
                subscriber.pc.connectionState != "connected") or subscriber.has_pending_offer():
            return False
    return True


async def _join(url: str, name: str) -> SyntheticParticipant:
    participant = SyntheticParticipant(url, ROOM, name, decode=False, remb=False)
    await participant.join(TIMEOUT)
    return participant


async def _leave(worker: Worker, participant: SyntheticParticipant) -> dict[str, Any]:
    """The client says ``leave`` (its connections stay open: their objects are not the
    server's garbage); until the server closed both of its connections and every stayer's
    renegotiation is done. Weak references to the leaver's server-side connections."""
    room = worker.rooms[ROOM]
    server_side = room.participants[str(participant.participant_id)]
    assert server_side.publisher is not None and server_side.subscriber is not None
    refs = {"publisher": weakref.ref(server_side.publisher.pc),
            "subscriber": weakref.ref(server_side.subscriber.pc)}
    del server_side
    await participant.send({"type": "leave"})

    def closed() -> bool:
        pcs = [ref() for ref in refs.values()]
        return (participant.participant_id not in room.participants
                and all(pc is None or pc.connectionState == "closed" for pc in pcs)
                and _settled(room))

    assert await wait_until(closed, TIMEOUT)
    return refs


async def test_a_leaver_leaves_little_for_the_collector(
        app_server: tuple[TestServer, Worker]) -> None:
    server, worker = app_server
    url = base_url(server)
    stayers = [await _join(url, f"stays {index}") for index in range(2)]
    leavers: list[SyntheticParticipant] = []
    try:
        for _round in range(2):  # the second leave also frees what the first one's stayers held
            leaver = await _join(url, "leaves")
            leavers.append(leaver)
            assert await wait_until(lambda: _settled(worker.rooms.get(ROOM))
                                    and len(worker.rooms[ROOM].participants) == 3, TIMEOUT)
            gc.collect()
            gc.disable()
            try:
                refs = await _leave(worker, leaver)
                found = gc.collect()
            finally:
                gc.enable()
            assert found < LEFT_FOR_THE_COLLECTOR
            # nothing of the leaver's connections is held (the stayers' closed consumers held
            # the publishing one before)
            assert [name for name, ref in refs.items() if ref() is not None] == []
    finally:
        for participant in stayers + leavers:
            await participant.close()


async def test_the_permanent_generation_stays_bounded_over_joins_and_leaves(
        app_server: tuple[TestServer, Worker]) -> None:
    server, worker = app_server
    url = base_url(server)
    lines: list[str] = []
    keeper = worker.gc_keeper = GcKeeper(
        FreezePolicy(settle_s=0.2, min_leavers=3, leavers_per_live=1),
        log=lambda *args: lines.append(args[0] % args[1:]))
    stayer = await _join(url, "stays")
    frozen: list[int] = []
    try:
        for _round in range(10):
            freezes = keeper.freezes + keeper.reclaims  # a reclaim freezes too
            leaver = await _join(url, "comes and goes")
            try:
                assert await wait_until(
                    lambda before=freezes: _settled(worker.rooms.get(ROOM))
                    and keeper.freezes + keeper.reclaims > before, TIMEOUT)
                await _leave(worker, leaver)
            finally:
                await leaver.close()
            frozen.append(gc.get_freeze_count())
        # a freeze after each join (a reclaim's freeze for some), a reclaim every 3 leavers
        assert keeper.freezes + keeper.reclaims >= 10 and keeper.reclaims >= 3
        assert all("leavers since the last reclaim" in line for line in lines)
        # What the test's own clients leave in cycles is frozen with the rest until a reclaim
        # (the server's leavers leave 20 objects): it does not pile up.
        assert max(frozen[3:]) < 1.2 * max(frozen[:3]), frozen
    finally:
        await stayer.close()


async def test_a_worker_left_with_nobody_reclaims(app_server: tuple[TestServer, Worker]) -> None:
    server, worker = app_server
    lines: list[str] = []
    keeper = worker.gc_keeper = GcKeeper(log=lambda *args: lines.append(args[0] % args[1:]))
    # (alone, a participant gets no subscribe offer: the freeze comes with the second)
    participants = [await _join(base_url(server), name) for name in ("first", "second")]
    try:
        assert await wait_until(lambda: keeper.freezes == 1, TIMEOUT)  # their joins settled
        await _leave(worker, participants[0])
        assert keeper.reclaims == 0  # one left of two: the next reclaim waits for 1000
        await _leave(worker, participants[1])
        assert await wait_until(lambda: keeper.reclaims == 1, TIMEOUT)
        assert lines and GcAction.RECLAIM_EMPTY.value in lines[0]
        assert "2 leavers, 0 participants" in lines[0]
    finally:
        for participant in participants:
            await participant.close()
