"""Automatic reconnection (signaling/resume.py) through the real application: a socket that
drops keeps its seat for the grace period, the others see `reconnecting` (not a leave), and a
new socket with the resume token takes the same seat back; bad or stale tokens are refused.

No media moves (nobody publishes), so these run anywhere. Sockets are dropped by aborting the
TCP connection (no close frame), as a network outage or change does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from signaling.app import SESSIONS, create_app
from signaling.control import CONTROL
from tests.conftest import make_config
from tests.integration.test_control_plane import Client

TIMEOUT = 10.0


async def _server(tmp_path: Path, grace: float) -> TestServer:
    server = TestServer(create_app(make_config(tmp_path, reconnect_grace_s=grace)),
                        host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    server = await _server(tmp_path, 10.0)
    yield server
    await server.close()


async def connect(server: TestServer) -> Client:
    http = aiohttp.ClientSession()
    url = str(server.make_url("/ws")).replace("http", "ws", 1)
    return Client(http, await http.ws_connect(url))


async def join(server: TestServer, **fields: Any) -> tuple[Client, dict[str, Any]]:
    client = await connect(server)
    await client.send({"type": "join", "room": "phong", **fields})
    return client, await client.next("joined", "error")


async def drop(client: Client) -> None:
    """Cut the TCP connection without a WebSocket close frame (an outage)."""
    connection = client.ws._response.connection  # noqa: SLF001 (test: no public way to abort)
    assert connection is not None and connection.transport is not None
    connection.transport.abort()
    await client.http.close()


async def no_message(client: Client, kind: str, seconds: float) -> None:
    """Nothing of type ``kind`` arrives within ``seconds`` (bounded wait)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                frame = await client.ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    return
                message = json.loads(frame.data)
                client.messages.append(message)
                assert message["type"] != kind, message
    except TimeoutError:
        pass


async def test_dropped_seat_is_held_and_resumed_without_a_leave(server: TestServer) -> None:
    a, _ = await join(server, name="An")
    b, joined_b = await join(server, name="Bình")
    assert joined_b["type"] == "joined" and joined_b["resume_token"]
    assert joined_b["reconnect_grace_s"] == 10.0
    await a.next("participant_joined")
    await drop(b)
    state = await a.next("participant_state", "participant_left")
    assert state == {"type": "participant_state", "participant_id": joined_b["participant_id"],
                     "state": "reconnecting"}
    b2, rejoined = await join(server, name="Bình", resume=joined_b["resume_token"])
    assert rejoined["type"] == "joined", rejoined
    assert rejoined["participant_id"] == joined_b["participant_id"]  # the same seat
    assert rejoined["resume_token"] != joined_b["resume_token"]  # a used token dies
    assert [p["name"] for p in rejoined["participants"]] == ["An"]
    state = await a.next("participant_state", "participant_left")
    assert state["state"] == "connected"
    assert not [m for m in a.messages if m["type"] == "participant_left"]
    assert server.app[CONTROL].admission.count("phong") == 2
    # The old token is spent: a second resume with it is refused, and the socket may then join.
    c, refused = await join(server, name="Bình", resume=joined_b["resume_token"])
    assert refused["type"] == "error" and refused["code"] == "resume-expired"
    await c.send({"type": "join", "room": "phong", "name": "Chi"})
    assert (await c.next("joined", "error"))["type"] == "joined"
    for client in (a, b2, c):
        await client.close()


async def test_clean_leave_is_not_held(server: TestServer) -> None:
    a, _ = await join(server, name="An")
    b, joined_b = await join(server, name="Bình")
    await a.next("participant_joined")
    await b.close()  # close frame 1000: the client ended the call
    left = await a.next("participant_state", "participant_left")
    assert left["type"] == "participant_left"
    _, refused = await join(server, name="Bình", resume=joined_b["resume_token"])
    assert refused["code"] == "resume-expired"
    await a.close()


async def test_held_seat_leaves_after_the_grace_period(tmp_path: Path) -> None:
    server = await _server(tmp_path, 0.5)
    try:
        a, _ = await join(server, name="An")
        b, joined_b = await join(server, name="Bình")
        await a.next("participant_joined")
        await drop(b)
        assert (await a.next("participant_state", "participant_left"))["type"] == \
            "participant_state"
        left = await a.next("participant_left")
        assert left["participant_id"] == joined_b["participant_id"]
        assert len(server.app[SESSIONS].resume) == 1  # only An's token is left
        _, refused = await join(server, name="Bình", resume=joined_b["resume_token"])
        assert refused["code"] == "resume-expired"
        await a.close()
    finally:
        await server.close()


async def test_resume_takes_a_half_open_seat_and_closes_the_old_socket(
        server: TestServer) -> None:
    """A network change: the old socket still looks alive to the server when the new one
    arrives. The seat moves; the old socket is closed; the others see no leave."""
    a, _ = await join(server, name="An")
    b, joined_b = await join(server, name="Bình")
    await a.next("participant_joined")
    b2, rejoined = await join(server, name="Bình", resume=joined_b["resume_token"])
    assert rejoined["participant_id"] == joined_b["participant_id"]
    assert (await b.next("never")) == {"type": "closed"}
    await no_message(a, "participant_left", 0.5)
    # The old socket's end must not free the seat the new one now holds.
    admission = server.app[CONTROL].admission
    assert admission.count("phong") == 2, admission.occupants("phong")
    assert joined_b["participant_id"] in admission.occupants("phong").values()
    await b2.send({"type": "ping", "id": 1})
    assert (await b2.next("pong"))["id"] == 1
    for client in (a, b2):
        await client.close()


@pytest.mark.parametrize("token", ["", "x" * 4096, "not-a-token", "\u0000"])
async def test_bad_resume_tokens_are_refused(server: TestServer, token: str) -> None:
    client, refused = await join(server, name="Bình", resume=token)
    assert refused["type"] == "error" and refused["code"] == "resume-expired"
    await client.close()


async def test_resume_into_another_room_is_refused(server: TestServer) -> None:
    a, joined = await join(server, name="An")
    client = await connect(server)
    await client.send({"type": "join", "room": "other", "name": "An",
                       "resume": joined["resume_token"]})
    assert (await client.next("joined", "error"))["code"] == "resume-expired"
    for c in (a, client):
        await c.close()
